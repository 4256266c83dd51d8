"""A MONAI Deploy App SDK application around medunet's unet3d bundle, the way a hospital deploys one: DICOM
loader -> series selector -> series to volume -> the SDK's bundle inference operator (reading the exported
TorchScript bundle: the model and its embedded inference.json) -> the SDK's DICOM SEG writer.

Run with the SDK's environment variables: HOLOSCAN_INPUT_PATH (a DICOM folder), HOLOSCAN_OUTPUT_PATH,
HOLOSCAN_MODEL_PATH (the ``model.ts`` written by ``monai.bundle ckpt_export``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import AppContext, Application
from monai.deploy.core.domain import Image
from monai.deploy.core.io_type import IOType
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_seg_writer_operator import DICOMSegmentationWriterOperator, SegmentDescription
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.monai_bundle_inference_operator import (
    BundleConfigNames,
    IOMapping,
    MonaiBundleInferenceOperator,
)
from pydicom.sr.codedict import codes

RULES = json.dumps({"selections": [{"name": "MR series", "conditions": {"Modality": "(?i)MR"}}]})


class MedunetSegApp(Application):
    def compose(self) -> None:
        context: AppContext = Application.init_app_context(self.argv)
        loader = DICOMDataLoaderOperator(
            self, CountCondition(self, 1), input_folder=Path(context.input_path), name="loader"
        )
        selector = DICOMSeriesSelectorOperator(self, rules=RULES, name="selector")
        to_volume = DICOMSeriesToVolumeOperator(self, name="to_volume")
        bundle = MonaiBundleInferenceOperator(
            self,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
            app_context=context,
            bundle_config_names=BundleConfigNames(config_names=["inference"]),
            name="medunet_bundle",
        )
        segments = [
            SegmentDescription(
                segment_label="foreground",
                segmented_property_category=codes.SCT.AnatomicalStructure,
                segmented_property_type=codes.SCT.AnatomicalStructure,
                algorithm_name="medunet-unet3d",
                algorithm_family=codes.DCM.ArtificialIntelligence,
                algorithm_version="0.1.0",
            )
        ]
        writer = DICOMSegmentationWriterOperator(
            self, segment_descriptions=segments, output_folder=Path(context.output_path), name="seg_writer"
        )
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, bundle, {("image", "image")})
        self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(bundle, writer, {("pred", "seg_image")})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    MedunetSegApp().run()
