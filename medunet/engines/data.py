"""Data lists for the bundles: the training/validation list and the cases of an inference folder."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medunet.data.datalist import check_files, read_datalist
from medunet.data.datasets import DATASETS, make_default_dataset
from medunet.io.dicom_series import (
    DicomSeriesError,
    DicomSeriesInfo,
    matching_series,
    read_dicom_header,
    scan_dicom_folder,
)
from medunet.io.dicom_study import select_channel_series
from medunet.io.image import IMAGE_SUFFIXES, NIFTI_SUFFIXES
from medunet.io.volumes import is_volume_path

__all__ = ["inference_datalist", "resolve_datalist"]

logger = logging.getLogger(__name__)


def resolve_datalist(
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    spatial_dims: int = 2,
    default_data: dict[str, Any] | None = None,
    channel_series: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The data list a bundle trains on, with absolute paths.

    - ``dataset_dir`` empty: medunet's generated default data set in ``<output_dir>/default_data``
      (made once, reused afterwards; ``default_data`` passes options to
      :func:`medunet.data.datasets.make_default_dataset`, e.g. ``{"n_training": 2, "shape": [96, 96]}``);
    - a folder with ``dataset.json`` or a JSON file: that decathlon-format list;
    - the name of a shared data set (:data:`medunet.data.datasets.DATASETS`, e.g. ``dsb2018_stage1``): its list
      with the split it defines, read from ``$MEDUNET_DATA_DIR`` or ``../shared/data``.

    A data set whose cases are DICOM studies read as several channels (its ``channels``, e.g. ``tcia_pgbm_tumor``)
    needs ``channel_series`` (the bundle's setting: one SeriesDescription pattern per channel).

    Raises:
        FileNotFoundError: the folder / file is missing or has no ``dataset.json``; a file it lists is missing.
        ValueError: the list is not valid JSON, or not of the decathlon form, or has no training cases; a
            multi-series data set without ``channel_series``.
    """
    if dataset_dir in DATASETS and not Path(str(dataset_dir)).exists():
        result = DATASETS[str(dataset_dir)]()
        for section in ("training", "validation"):
            check_files(str(dataset_dir), section, result[section])
        if result.get("channels") and not channel_series:
            raise ValueError(
                f"dataset_dir={dataset_dir}: its cases are DICOM studies read as {len(result['channels'])} channels; "
                f"give --channel_series {json.dumps(result['channels'])} --label_series "
                f"{json.dumps(result.get('label_series'))} --in_channels {len(result['channels'])} (or use a bundle "
                "made for it)"
            )
        result["source"] = str(dataset_dir)
        return result
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
    result = read_datalist(listing)
    if not result["training"]:
        raise ValueError(f"{listing}: the 'training' list is empty")
    if not result["validation"]:
        logger.warning("%s has no 'validation' list: validating on the training cases", listing)
        result["validation"] = list(result["training"])
    result["source"] = str(listing)
    return result


def _series_in(files: list[Path]) -> list[DicomSeriesInfo]:
    """The series of the DICOM files among ``files`` (SeriesInstanceUID "" for files without one; ``files`` of
    each record left empty: only the headers were read); empty when none is DICOM."""
    found: dict[str, DicomSeriesInfo] = {}
    for path in files:
        header = read_dicom_header(path)
        if header is not None:
            uid = str(header.get("SeriesInstanceUID", "") or "")
            found.setdefault(
                uid,
                DicomSeriesInfo(
                    series_uid=uid,
                    modality=str(header.get("Modality", "") or ""),
                    description=str(header.get("SeriesDescription", "") or ""),
                    study_uid=str(header.get("StudyInstanceUID", "") or ""),
                    files=(),
                ),
            )
    return list(found.values())


def study_datalist(input_dir: str | Path, channels: Sequence[str], label: str | None = None) -> list[dict[str, str]]:
    """One case per DICOM study below ``input_dir`` (any depth; studies told apart by StudyInstanceUID) whose series
    match each channel pattern (and ``label``) exactly once: the case's ``image`` (and ``label``) is the folder that
    holds the study's chosen series, read by :class:`~medunet.io.dicom_study.DicomStudyReader`. Studies without a
    match are left out, each named in the log with its reason.

    Raises:
        FileNotFoundError: ``input_dir`` is missing. DicomSeriesError: no study matches (each study's reason and
            series listed).
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist or is not a folder")
    studies: dict[str, list[DicomSeriesInfo]] = {}
    for info in scan_dicom_folder(root):
        studies.setdefault(info.study_uid, []).append(info)
    patterns = [*channels, *([label] if label is not None else [])]
    cases, reasons = [], []
    for uid, series in sorted(studies.items(), key=lambda item: str(item[1][0].files[0])):
        try:
            chosen = select_channel_series(series, patterns, where=f"study {uid}")
        except DicomSeriesError as err:
            reasons.append(str(err))
            logger.info("left out: %s", str(err).splitlines()[0])
            continue
        folder = os.path.commonpath([str(path.parent) for info in chosen for path in info.files])
        cases.append({"image": folder, **({"label": folder} if label is not None else {})})
    if not cases:
        details = "\n".join(reasons)
        raise DicomSeriesError(f"no study in {root} has a series for each of {patterns}:\n{details}")
    return cases


def inference_datalist(
    input_dir: str | Path,
    series_description: str | None = None,
    modality: str | None = None,
    series_uid: str | None = None,
    channels: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """Cases in ``input_dir`` for inference: NIfTI / 2D image files, and sub-folders holding a DICOM series
    (or ``input_dir`` itself when it holds DICOM files directly).

    ``series_description`` (a regular expression, case-insensitive), ``modality`` and ``series_uid`` select DICOM
    series (the bundles' ``--series_description``, ``--modality``, ``--series_uid``): folders without a matching
    series are left out (logged), and the loader picks the matching series inside each folder. Without a
    selection, a warning says how many series of how many studies will be segmented, and how to select.

    With ``channels`` (SeriesDescription patterns of a multi-series model) the cases are the studies below
    ``input_dir`` that have a series for each pattern (:func:`study_datalist`).

    Raises:
        FileNotFoundError: ``input_dir`` is missing. ``ValueError``: no case found in it, an invalid
            ``series_description`` pattern, or no series matching the selection.
    """
    if channels:
        return study_datalist(input_dir, channels)
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir={input_dir!s} does not exist or is not a folder")
    selection = {
        k: str(v)
        for k, v in (("series_description", series_description), ("modality", modality), ("series_uid", series_uid))
        if v not in (None, "")
    }
    if "series_description" in selection:
        try:
            re.compile(selection["series_description"])
        except re.error as err:
            raise ValueError(
                f"--series_description {selection['series_description']!r} is not a valid regular expression ({err})"
            ) from None
    suffixes = NIFTI_SUFFIXES + IMAGE_SUFFIXES
    files = sorted(p for p in root.iterdir() if p.is_file())
    # the headers of up to 50 files per folder say whether it holds DICOM and which series
    in_root = _series_in(files[:50])
    folders = {root: in_root} if in_root else {}
    cases = [] if folders else [{"image": str(p)} for p in files if p.name.lower().endswith(suffixes)]
    if not folders:  # zarr arrays and OME-Zarr images are folders too
        cases += [{"image": str(p)} for p in sorted(root.iterdir()) if p.is_dir() and is_volume_path(p)]
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not is_volume_path(p)):
            series = _series_in(sorted(q for q in sub.iterdir() if q.is_file())[:50])
            if series:
                folders[sub] = series
    every = list({info.series_uid: info for series in folders.values() for info in series}.values())
    if selection:
        criteria = {
            "series_uid": selection.get("series_uid"),
            "modality": selection.get("modality"),
            "description": selection.get("series_description"),
        }
        kept = {f: s for f, s in folders.items() if matching_series(s, **criteria)}
        if folders and not kept:
            listing = "\n".join(
                f"  - {i.series_uid} {i.modality} {i.description!r}"
                for i in sorted(every, key=lambda i: i.series_uid)[:30]
            )
            raise ValueError(
                f"no DICOM series in input_dir={input_dir!s} matches {selection}; series found:\n{listing}"
            )
        if len(kept) < len(folders):
            logger.info(
                "%d of %d series folders have no series matching %s; left out",
                len(folders) - len(kept),
                len(folders),
                selection,
            )
        folders = kept
    elif len(every) > 1:
        studies = {info.study_uid for info in every}
        logger.warning(
            "input_dir=%s holds %d DICOM series of %d %s; every one is segmented. Select with --series_description "
            "REGEX, --modality MR|CT|..., or --series_uid UID",
            input_dir,
            len(every),
            len(studies),
            "study" if len(studies) == 1 else "studies (patients or visits)",
        )
    cases += [{"image": str(folder)} for folder in folders]
    if not cases:
        raise ValueError(
            f"input_dir={input_dir!s} holds no NIfTI ({', '.join(NIFTI_SUFFIXES)}), 2D image ({', '.join(IMAGE_SUFFIXES)}) "
            "or DICOM series folder"
        )
    return cases
