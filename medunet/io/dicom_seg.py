"""DICOM Segmentation objects (BINARY, AUTOMATIC) for a segmented DICOM series, built with highdicom.

Frame ``k`` of the SEG refers to the ``k``-th source image in medunet's slice order (position along the
slice normal, see :mod:`medunet.io.dicom_series`); the pixel data is taken from the ``(x, y, z)`` label
volume in that order, transposed to DICOM's (rows, columns). Frames without any segment are omitted.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

import medunet
from medunet.io.dicom_series import (
    DicomSeriesError,
    DicomSeriesInfo,
    read_dicom_header,
    read_dicom_series,
    scan_dicom_folder,
    select_series,
)
from medunet.utils.files import atomic_write

__all__ = [
    "SegmentSpec",
    "build_dicom_seg",
    "derived_series_number",
    "read_dicom_seg",
    "seg_series_number",
    "segments_from_metadata",
    "single_valued_names",
    "source_headers",
    "write_dicom_seg",
    "write_dicom_seg_for",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentSpec:
    """One segment: its label value in the prediction, a label and SNOMED-CT (or other) coded concepts."""

    number: int
    label: str
    category: tuple[str, str, str] = ("SCT", "91723000", "Anatomical structure")
    type: tuple[str, str, str] = ("SCT", "91723000", "Anatomical structure")

    def coded(self, which: tuple[str, str, str]) -> hd.sr.CodedConcept:
        scheme, value, meaning = which
        return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def segments_from_metadata(metadata: Mapping[str, Any]) -> list[SegmentSpec]:
    """Segment definitions from a bundle's ``metadata.json`` (``segment_codes``: label value -> codes)."""
    specs = []
    for number, entry in sorted(metadata.get("segment_codes", {}).items(), key=lambda kv: int(kv[0])):
        specs.append(SegmentSpec(int(number), str(entry["label"]), tuple(entry["category"]), tuple(entry["type"])))
    if not specs:
        raise ValueError(
            "metadata has no 'segment_codes': add one entry per class (label value -> label, category, type)"
        )
    return specs


def build_dicom_seg(
    labels: np.ndarray,
    source_images: Sequence[pydicom.Dataset],
    segments: Sequence[SegmentSpec],
    algorithm_name: str = "medunet",
    algorithm_version: str = medunet.__version__,
    series_number: int | None = None,
    series_description: str = "medunet segmentation",
) -> hd.seg.Segmentation:
    """A BINARY DICOM SEG for an ``(x, y, z)`` label volume aligned with ``source_images`` (in slice order).

    ``series_number`` defaults to :func:`seg_series_number` (the source's SeriesNumber + 9000).

    Raises:
        ValueError: the volume does not match the source images, or holds label values without a segment.
    """
    if labels.ndim != 3 or labels.shape != (
        int(source_images[0].Columns),
        int(source_images[0].Rows),
        len(source_images),
    ):
        raise ValueError(
            f"label volume {labels.shape} does not match the source series "
            f"({source_images[0].Columns} columns x {source_images[0].Rows} rows x {len(source_images)} slices)"
        )
    known = {s.number for s in segments}
    present = {int(v) for v in np.unique(labels)} - {0}
    if present - known:
        raise ValueError(f"label values {sorted(present - known)} have no segment description; known: {sorted(known)}")
    frames = np.ascontiguousarray(np.transpose(labels, (2, 1, 0))).astype(np.uint8)  # (slices, rows, columns)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=s.number,
            segment_label=s.label,
            segmented_property_category=s.coded(s.category),
            segmented_property_type=s.coded(s.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for s in segments
    ]
    first, names = single_valued_names(source_images[0], "SEG")
    if series_number is None:
        series_number = seg_series_number(source_images[0])
    seg = hd.seg.Segmentation(
        source_images=[first, *source_images[1:]],
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medunet",
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=True,
    )
    for keyword, element in names.items():  # the source's value, byte for byte
        seg[keyword] = element
    return seg


SEG_SERIES_OFFSET = 9000
"""A SEG's SeriesNumber is its source's plus this, so SEGs of different series of a study differ (and sort after
them); 900 when the source has no SeriesNumber."""


def derived_series_number(source: pydicom.Dataset, offset: int, fallback: int) -> int:
    """The SeriesNumber of an object derived from the series whose first header is ``source``: its SeriesNumber
    plus ``offset``, ``fallback`` when it has none."""
    try:
        return offset + int(source.get("SeriesNumber"))
    except (TypeError, ValueError):
        return fallback


def seg_series_number(source: pydicom.Dataset) -> int:
    """The SeriesNumber of the SEG of the series whose first header is ``source``."""
    return derived_series_number(source, SEG_SERIES_OFFSET, 900)


_PERSON_NAMES = ("PatientName", "ReferringPhysicianName")  # the person names highdicom copies from the source


def single_valued_names(header: pydicom.Dataset, written: str) -> tuple[pydicom.Dataset, dict[str, Any]]:
    """``header``, or a copy whose multi-valued person names are joined into one value, and the original
    elements to put back into the object written from it (``written``: its name for the log, e.g. ``"SEG"``).

    A backslash in a name (``Doe^John\\Smith``) is DICOM's value delimiter, so the name reads as several values;
    highdicom refuses that (``TypeError: Invalid type for a person name``) in a SEG and an SR alike, which aborted
    the whole case. The written object keeps the source's value unchanged, so the PACS files it with the same
    patient.
    """
    multi = {k: header[k] for k in _PERSON_NAMES if k in header and header[k].VM > 1}
    if not multi:
        return header, {}
    logger.warning(
        "%s of the source series has %s values (a backslash in the name); copied unchanged into the %s",
        " and ".join(multi),
        " / ".join(str(e.VM) for e in multi.values()),
        written,
    )
    fixed = copy.deepcopy(header)
    for keyword, element in multi.items():
        fixed[keyword].value = " ".join(str(v) for v in element.value)
    return fixed, {k: copy.deepcopy(e) for k, e in multi.items()}


def write_dicom_seg(
    labels: np.ndarray,
    series_folder: str | Path,
    output_path: str | Path,
    segments: Sequence[SegmentSpec],
    series_uid: str | None = None,
    **kwargs: Any,
) -> Path:
    """Reads the source series headers from ``series_folder`` and writes the SEG to ``output_path``
    (written to a temporary name and renamed, so no half-written file is left behind)."""
    info: DicomSeriesInfo = select_series(scan_dicom_folder(series_folder), series_uid=series_uid, where=series_folder)
    volume = read_dicom_series(info)
    seg = build_dicom_seg(labels, volume.headers, segments, **kwargs)
    out = atomic_write(output_path, seg.save_as)
    logger.info("wrote DICOM SEG %s (%d frames) for series %s", out, int(seg.NumberOfFrames), info.series_uid)
    return out


def source_headers(
    files: Sequence[str | Path], sop_instance_uids: Sequence[str] | None = None
) -> list[pydicom.Dataset]:
    """The headers (no pixel data) of the source slices ``files``, in the given (slice) order; with
    ``sop_instance_uids`` (the image's metadata), each file must still hold the instance it held when loaded.

    Raises:
        DicomSeriesError: a file is gone, not DICOM, or holds another instance than the metadata says.
    """
    headers = []
    for k, name in enumerate(files):
        path = Path(name)
        if not path.is_file():
            raise DicomSeriesError(f"{path}: source slice of the segmentation no longer exists")
        header = read_dicom_header(path)
        if header is None:
            raise DicomSeriesError(f"{path}: source slice of the segmentation is not a DICOM file")
        if sop_instance_uids is not None and str(header.get("SOPInstanceUID", "")) != str(sop_instance_uids[k]):
            raise DicomSeriesError(
                f"{path}: holds SOPInstanceUID {header.get('SOPInstanceUID')}, the loaded image had "
                f"{sop_instance_uids[k]} there; the folder changed after loading, segment it again"
            )
        headers.append(header)
    return headers


def write_dicom_seg_for(
    labels: np.ndarray,
    meta: Mapping[str, Any],
    output_path: str | Path,
    segments: Sequence[SegmentSpec],
    measurements: Sequence[Mapping[str, Any]] | None = None,
    sr_path: str | Path | None = None,
    headers: Sequence[pydicom.Dataset] | None = None,
    notes: Mapping[int, str] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Writes the SEG of ``labels`` for an image loaded from a DICOM series, from the image's metadata (its
    ``SourceFiles`` and ``SOPInstanceUIDs``, in slice order): only the slices' headers are read, not the folder
    and not the pixel data again. With ``measurements`` (:func:`medunet.metrics.segment_measurements`) and
    ``sr_path``, also the TID 1500 report of them (:mod:`medunet.io.dicom_sr`), with ``notes`` per segment number.
    ``headers``: those of :func:`source_headers`, when the caller read them already. Returns the written files."""
    from medunet.io.dicom_sr import build_measurement_report  # imports this module

    if headers is None:
        headers = source_headers(meta["SourceFiles"], meta.get("SOPInstanceUIDs"))
    seg = build_dicom_seg(labels, headers, segments, **kwargs)
    written = [atomic_write(output_path, seg.save_as)]
    logger.info(
        "wrote DICOM SEG %s (%d frames) for series %s", written[0], int(seg.NumberOfFrames), seg.SeriesInstanceUID
    )
    if measurements is not None and sr_path is not None and len(seg.SegmentSequence):
        sr = build_measurement_report(seg, headers, measurements, segments, notes=notes)
        written.append(atomic_write(sr_path, sr.save_as))
        logger.info("wrote DICOM SR %s (measurements of %d segments)", written[-1], len(measurements))
    return written


def read_dicom_seg(path: str | Path, source_sop_instance_uids: Sequence[str]) -> np.ndarray:
    """The label volume ``(x, y, z)`` of a SEG, with slices in the order of ``source_sop_instance_uids``
    (each voxel holds the segment number, 0 where no segment)."""
    seg = hd.seg.segread(path)
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    present = [uid for uid in source_sop_instance_uids if uid in referenced]
    rows, cols = int(seg.Rows), int(seg.Columns)
    out = np.zeros((cols, rows, len(source_sop_instance_uids)), dtype=np.uint8)
    if not present:
        return out
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=present, segment_numbers=numbers, combine_segments=True, relabel=False
    )
    index = {uid: k for k, uid in enumerate(source_sop_instance_uids)}
    for frame, uid in zip(pixels, present):
        out[:, :, index[uid]] = frame.T
    return out
