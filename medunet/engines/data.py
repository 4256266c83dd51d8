"""Data lists for the bundles: the training/validation list and the cases of an inference folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from medunet.data.datasets import make_default_dataset
from medunet.io.dicom_series import read_dicom_header
from medunet.io.image import IMAGE_SUFFIXES, NIFTI_SUFFIXES

__all__ = ["inference_datalist", "resolve_datalist"]

logger = logging.getLogger(__name__)


def resolve_datalist(
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    spatial_dims: int = 2,
    default_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The data list a bundle trains on, with absolute paths.

    - ``dataset_dir`` empty: medunet's generated default data set in ``<output_dir>/default_data``
      (made once, reused afterwards; ``default_data`` passes options to
      :func:`medunet.data.datasets.make_default_dataset`, e.g. ``{"n_training": 2, "shape": [96, 96]}``);
    - a folder with ``dataset.json`` or a JSON file: that decathlon-format list.

    Raises:
        FileNotFoundError: the folder / file is missing or has no ``dataset.json``.
    """
    if not dataset_dir:
        listing = make_default_dataset(
            Path(output_dir) / "default_data", spatial_dims=spatial_dims, **(default_data or {})
        )
    else:
        path = Path(dataset_dir)
        listing = path / "dataset.json" if path.is_dir() else path
        if not listing.is_file():
            raise FileNotFoundError(
                f"dataset_dir={dataset_dir!s}: no dataset.json there; give a folder holding a decathlon-format "
                "dataset.json, the JSON file itself, or leave dataset_dir empty for the generated default data"
            )
    content = json.loads(listing.read_text())
    result: dict[str, Any] = {k: v for k, v in content.items() if k not in ("training", "validation", "test")}
    for section in ("training", "validation"):
        result[section] = load_decathlon_datalist(listing, data_list_key=section) if section in content else []
    if not result["training"]:
        raise ValueError(f"{listing}: the 'training' list is empty")
    if not result["validation"]:
        logger.warning("%s has no 'validation' list: validating on the training cases", listing)
        result["validation"] = list(result["training"])
    result["source"] = str(listing)
    return result


def inference_datalist(input_dir: str | Path) -> list[dict[str, str]]:
    """Cases in ``input_dir`` for inference: NIfTI / 2D image files, and sub-folders holding a DICOM series
    (or ``input_dir`` itself when it holds DICOM files directly).

    Raises:
        FileNotFoundError: ``input_dir`` is missing. ``ValueError``: no case found in it.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir={input_dir!s} does not exist or is not a folder")
    suffixes = NIFTI_SUFFIXES + IMAGE_SUFFIXES
    files = sorted(p for p in root.iterdir() if p.is_file())
    if any(read_dicom_header(p) is not None for p in files[:50]):
        return [{"image": str(root)}]
    cases = [{"image": str(p)} for p in files if p.name.lower().endswith(suffixes)]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        inner = sorted(q for q in sub.iterdir() if q.is_file())[:50]
        if any(read_dicom_header(q) is not None for q in inner):
            cases.append({"image": str(sub)})
    if not cases:
        raise ValueError(
            f"input_dir={input_dir!s} holds no NIfTI ({', '.join(NIFTI_SUFFIXES)}), 2D image ({', '.join(IMAGE_SUFFIXES)}) "
            "or DICOM series folder"
        )
    return cases
