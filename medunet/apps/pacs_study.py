"""Segment a study of a research PACS: query its series, retrieve the one to segment, run the bundle on it and
store the DICOM SEG and its measurement report (SR) back into the same study."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from medunet.apps.segmenter import BundleSegmenter, dicom_outputs
from medunet.io.dicom_series import DicomSeriesError, DicomSeriesInfo, matching_series
from medunet.io.dicom_study import select_channel_series
from medunet.io.pacs import PacsClient, PacsError, series_folder_name
from medunet.utils.enums import RetrieveMethod, look_up

__all__ = ["choose_channel_series", "choose_series", "segment_study"]

logger = logging.getLogger(__name__)

_NOT_IMAGES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "REG"}


def choose_series(
    series: Sequence[Dataset],
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
) -> Dataset:
    """The image series to segment among a study's C-FIND results, chosen by the criteria of a folder's series
    (:func:`medunet.io.dicom_series.matching_series`); raises ``PacsError`` listing the candidates when not exactly
    one fits."""
    images = [s for s in series if str(getattr(s, "Modality", "")) not in _NOT_IMAGES]
    records = _records(images)
    chosen = matching_series(records, series_uid or None, modality or None, description or None)
    if len(chosen) == 1:
        return images[records.index(chosen[0])]
    listing = "\n".join(
        f"  - {s.SeriesInstanceUID} {getattr(s, 'Modality', '?')} {str(getattr(s, 'SeriesDescription', ''))!r}"
        for s in series
    )
    raise PacsError(
        f"{len(chosen)} series match; choose one with --series-uid, --modality or --description:\n{listing}"
    )


def _records(images: Sequence[Dataset]) -> list[DicomSeriesInfo]:
    return [
        DicomSeriesInfo(
            series_uid=str(s.SeriesInstanceUID),
            modality=str(getattr(s, "Modality", "") or ""),
            description=str(getattr(s, "SeriesDescription", "") or ""),
            study_uid=str(getattr(s, "StudyInstanceUID", "") or ""),
            files=(),
        )
        for s in images
    ]


def choose_channel_series(series: Sequence[Dataset], channels: Sequence[str]) -> list[Dataset]:
    """The series of a multi-series model's channels (one SeriesDescription pattern each, the first the reference
    grid) among a study's C-FIND results; raises ``PacsError`` listing the study's series when a pattern matches
    none or several."""
    images = [s for s in series if str(getattr(s, "Modality", "")) not in _NOT_IMAGES]
    records = _records(images)
    try:
        chosen = select_channel_series(records, channels, where="the study on the PACS")
    except DicomSeriesError as err:
        raise PacsError(str(err)) from None
    return [images[records.index(c)] for c in chosen]


def segment_study(
    client: PacsClient,
    segmenter: BundleSegmenter,
    study_uid: str,
    work_dir: str | Path | None = None,
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    retrieve: str | RetrieveMethod = RetrieveMethod.MOVE,
    store: bool = True,
) -> dict[str, Any]:
    """Query, retrieve, segment and store back one series of a study.

    Args:
        client: the PACS.
        segmenter: the bundle to apply (its inference must write a DICOM SEG, as ``unet3d``'s does).
        study_uid: the study; ``series_uid`` / ``modality`` / ``description`` (a regular expression on
            SeriesDescription) choose the series when the study holds several image series. A multi-series model
            (its bundle's ``channel_series``) takes one series per pattern instead, retrieved into one study
            folder; the SEG references the first (the reference grid).
        work_dir: where the retrieved series and the outputs go (default: a new temporary folder).
        retrieve: ``"move"``, ``"get"`` or ``"wado"`` (:class:`~medunet.utils.enums.RetrieveMethod`).
        store: send the SEG (and the measurement report, an SR, when the bundle writes one) back to the PACS.

    Returns:
        A summary: the series segmented, the files written, the SEG's series UID and the seconds per step.

    Raises:
        ValueError: an unknown ``retrieve`` method (before anything is fetched).
        PacsError: the study or series is missing or ambiguous, or a PACS operation failed.
    """
    method = look_up(retrieve, RetrieveMethod, "retrieve")
    series = client.find_series(study_uid)
    if not series:
        raise PacsError(f"study {study_uid} not found on {client.config.describe()}")
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="medunet-pacs-"))
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if segmenter.channel_series:  # a multi-series model: its channels' series, retrieved into one study folder
        chosen_series = choose_channel_series(series, segmenter.channel_series)
        uid = str(chosen_series[0].SeriesInstanceUID)  # the reference series, which the SEG references
        folder = work / "input" / series_folder_name(study_uid)
        files = []
        for one in chosen_series:
            one_uid = str(one.SeriesInstanceUID)
            files += client.retrieve_series(study_uid, one_uid, folder / series_folder_name(one_uid), method)
    else:
        uid = str(choose_series(series, series_uid, modality, description).SeriesInstanceUID)
        folder = work / "input" / series_folder_name(uid)
        files = client.retrieve_series(study_uid, uid, folder, method)
    timings["retrieve"] = time.perf_counter() - start
    start = time.perf_counter()
    outputs = segmenter.segment(folder, work / "output")
    timings["segment"] = time.perf_counter() - start
    segs, reports = dicom_outputs(outputs)
    seg = segs[0] if segs else None
    if seg is None:
        raise PacsError(f"inference on series {uid} wrote no DICOM SEG (outputs: {[p.name for p in outputs]})")
    summary: dict[str, Any] = {
        "study_uid": study_uid,
        "series_uid": uid,
        "instances": len(files),
        "outputs": [str(p) for p in outputs],
        "seg_series_uid": str(pydicom.dcmread(seg, stop_before_pixels=True).SeriesInstanceUID),
        "report_series_uids": {
            p.name: str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in reports
        },
        "stored": False,
    }
    if store:
        start = time.perf_counter()
        client.store([seg, *reports])
        timings["store"] = time.perf_counter() - start
        summary["stored"] = True
    summary["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return summary
