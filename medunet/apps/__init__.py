"""Applications over the library: the bundle segmenter service, the PACS study workflow and the DICOM
listener. The top layer: ``medunet.cli`` calls these; nothing else in medunet imports them."""

from medunet.apps.evaluation import evaluate_folder, format_table, pair_cases
from medunet.apps.pacs_listener import PacsListener
from medunet.apps.pacs_study import choose_series, segment_study
from medunet.apps.segmenter import BundleSegmenter

__all__ = [
    "BundleSegmenter",
    "PacsListener",
    "choose_series",
    "evaluate_folder",
    "format_table",
    "pair_cases",
    "segment_study",
]
