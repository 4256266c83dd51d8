"""MONAI transforms for the valid-convolution U-Net (array and dictionary forms).

Names are imported on first use (:mod:`medunet.utils.lazy`).
"""

from typing import TYPE_CHECKING

from medunet.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from medunet.transforms.crop import CropToOutputd, RandValidTiled, crop_to_output
    from medunet.transforms.elastic import RandUNetElastic, RandUNetElasticd
    from medunet.transforms.instances import (
        LabelToInstancesd,
        PredictionToInstances,
        PredictionToInstancesd,
        label_to_instances,
    )
    from medunet.transforms.intensity import IntensityPreset, IntensityPresetd, intensity_preset
    from medunet.transforms.io import (
        LoadImageOrSeriesd,
        SaveDicomSegd,
        SaveImaged,
        SaveInstanceMeasurementsd,
        SaveMeasurementsd,
        SaveOverlayd,
    )
    from medunet.transforms.labels import AddChanneld, LabelRule, LabelToClassesd, ToGrayscaled, label_to_classes
    from medunet.transforms.weight_map import UNetWeightMap, UNetWeightMapd

__all__ = [
    "AddChanneld",
    "CropToOutputd",
    "IntensityPreset",
    "IntensityPresetd",
    "LabelRule",
    "LabelToClassesd",
    "LabelToInstancesd",
    "LoadImageOrSeriesd",
    "PredictionToInstances",
    "PredictionToInstancesd",
    "RandUNetElastic",
    "RandUNetElasticd",
    "RandValidTiled",
    "SaveDicomSegd",
    "SaveImaged",
    "SaveInstanceMeasurementsd",
    "SaveMeasurementsd",
    "SaveOverlayd",
    "ToGrayscaled",
    "UNetWeightMap",
    "UNetWeightMapd",
    "crop_to_output",
    "intensity_preset",
    "label_to_classes",
    "label_to_instances",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "CropToOutputd": "medunet.transforms.crop",
        "RandValidTiled": "medunet.transforms.crop",
        "crop_to_output": "medunet.transforms.crop",
        "RandUNetElastic": "medunet.transforms.elastic",
        "RandUNetElasticd": "medunet.transforms.elastic",
        "LabelToInstancesd": "medunet.transforms.instances",
        "PredictionToInstances": "medunet.transforms.instances",
        "PredictionToInstancesd": "medunet.transforms.instances",
        "label_to_instances": "medunet.transforms.instances",
        "IntensityPreset": "medunet.transforms.intensity",
        "IntensityPresetd": "medunet.transforms.intensity",
        "intensity_preset": "medunet.transforms.intensity",
        "LoadImageOrSeriesd": "medunet.transforms.io",
        "SaveDicomSegd": "medunet.transforms.io",
        "SaveImaged": "medunet.transforms.io",
        "SaveInstanceMeasurementsd": "medunet.transforms.io",
        "SaveMeasurementsd": "medunet.transforms.io",
        "SaveOverlayd": "medunet.transforms.io",
        "AddChanneld": "medunet.transforms.labels",
        "LabelRule": "medunet.transforms.labels",
        "LabelToClassesd": "medunet.transforms.labels",
        "ToGrayscaled": "medunet.transforms.labels",
        "label_to_classes": "medunet.transforms.labels",
        "UNetWeightMap": "medunet.transforms.weight_map",
        "UNetWeightMapd": "medunet.transforms.weight_map",
    },
)
