"""Applications over the library: the bundle segmenter service, the PACS study workflow, the DICOM listener and
blockwise inference of volumes larger than memory. The top layer: ``medunet.cli`` calls these; nothing else in
medunet imports them.

The names below are imported on first use: a dask worker that runs blockwise tasks imports
``medunet.apps.blockwise`` only, not the PACS and evaluation applications.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BlockwiseJob": "blockwise",
    "BundleSegmenter": "segmenter",
    "PacsListener": "pacs_listener",
    "choose_series": "pacs_study",
    "evaluate_folder": "evaluation",
    "format_table": "evaluation",
    "label_instances": "blockwise",
    "pair_cases": "evaluation",
    "run_blockwise": "blockwise",
    "segment_study": "pacs_study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medunet.apps' has no attribute {name!r}")
    return getattr(importlib.import_module(f"medunet.apps.{_EXPORTS[name]}"), name)
