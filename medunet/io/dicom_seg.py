"""DICOM Segmentation objects (AUTOMATIC) for a segmented DICOM series, built with highdicom.

Two kinds (:class:`~medunet.utils.enums.SegType`): ``binary``, one 1-bit frame per segment and slice (the default:
every viewer reads it), and ``labelmap``, one 8-bit frame per slice holding the segment numbers (the label-map
segmentation of DICOM 2024; OHIF 3.10 and highdicom 0.24 read it).

Frame ``k`` of the SEG refers to the ``k``-th source image in medunet's slice order (position along the
slice normal, see :mod:`medunet.io.dicom_series`); the pixel data is taken from the ``(x, y, z)`` label
volume in that order, transposed to DICOM's (rows, columns). Frames without any segment are omitted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

import medunet
from medunet.io.dicom_derived import SegmentSpec, derived_series_number, single_valued_names
from medunet.io.dicom_series import DicomSeriesInfo, read_dicom_series, scan_dicom_folder, select_series
from medunet.utils.enums import SegType, look_up
from medunet.utils.files import atomic_write

__all__ = ["SEG_SERIES_OFFSET", "build_dicom_seg", "read_dicom_seg", "seg_series_number", "write_dicom_seg"]

logger = logging.getLogger(__name__)


def build_dicom_seg(
    labels: np.ndarray,
    source_images: Sequence[pydicom.Dataset],
    segments: Sequence[SegmentSpec],
    algorithm_name: str = "medunet",
    algorithm_version: str = medunet.__version__,
    series_number: int | None = None,
    series_description: str = "medunet segmentation",
    seg_type: SegType | str = SegType.BINARY,
) -> hd.seg.Segmentation:
    """A DICOM SEG for an ``(x, y, z)`` label volume aligned with ``source_images`` (in slice order).

    ``series_number`` defaults to :func:`seg_series_number` (the source's SeriesNumber + 9000). ``seg_type``:
    ``binary`` (SegmentationType BINARY) or ``labelmap`` (LABELMAP, the label-map SEG storage class).

    Raises:
        ValueError: the volume does not match the source images, holds label values without a segment, or
            ``seg_type`` is neither kind.
    """
    kind = look_up(seg_type, SegType, "seg_type")
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
        segmentation_type=SEGMENTATION_TYPES[kind],
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


SEGMENTATION_TYPES = {
    SegType.BINARY: hd.seg.SegmentationTypeValues.BINARY,
    SegType.LABELMAP: hd.seg.SegmentationTypeValues.LABELMAP,
}

SEG_SERIES_OFFSET = 9000
"""A SEG's SeriesNumber is its source's plus this, so SEGs of different series of a study differ (and sort after
them); 900 when the source has no SeriesNumber."""


def seg_series_number(source: pydicom.Dataset) -> int:
    """The SeriesNumber of the SEG of the series whose first header is ``source``."""
    return derived_series_number(source, SEG_SERIES_OFFSET, 900)


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


def read_dicom_seg(path: str | Path, source_sop_instance_uids: Sequence[str]) -> np.ndarray:
    """The label volume ``(x, y, z)`` of a SEG (binary or label-map), with slices in the order of
    ``source_sop_instance_uids`` (each voxel holds the segment number, 0 where no segment)."""
    seg = hd.seg.segread(path)
    # a label-map SEG describes its background as segment 0, which is not a segment to read
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence if int(s.SegmentNumber) > 0]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    present = [uid for uid in source_sop_instance_uids if uid in referenced]
    rows, cols = int(seg.Rows), int(seg.Columns)
    out = np.zeros((cols, rows, len(source_sop_instance_uids)), dtype=np.uint8)
    if not present or not numbers:
        return out
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=present, segment_numbers=numbers, combine_segments=True, relabel=False
    )
    index = {uid: k for k, uid in enumerate(source_sop_instance_uids)}
    for frame, uid in zip(pixels, present):
        out[:, :, index[uid]] = frame.T
    return out
