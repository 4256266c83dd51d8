"""MONAI transforms for the valid-convolution U-Net (array and dictionary forms)."""

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
