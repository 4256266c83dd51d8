"""DICOM RT Structure Sets (RTSTRUCT) of a segmentation, for radiotherapy systems, which read contours, not SEG.

Built with rt-utils (highdicom writes no RTSTRUCT): one ROI per segment, its planar contours traced slice by
slice on the source grid (OpenCV; a hole is an inner contour). Contours lose voxel detail by nature: a contour runs
through the centres of the border voxels, so a read-back onto the grid is close to the mask, not equal to it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.valuerep import format_number_as_ds

from medunet.io.dicom_seg import SegmentSpec, source_headers
from medunet.utils.files import atomic_write

__all__ = ["build_rtstruct", "write_rtstruct_for"]

logger = logging.getLogger(__name__)

_COLOURS = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]]


def build_rtstruct(
    labels: np.ndarray, source_images: Sequence[pydicom.Dataset], segments: Sequence[SegmentSpec]
) -> pydicom.Dataset:
    """The RTSTRUCT of an ``(x, y, z)`` label volume aligned with ``source_images`` (headers, in slice order):
    one ROI per segment present in ``labels``."""
    from rt_utils import ds_helper
    from rt_utils.rtstruct import RTStruct

    if labels.ndim != 3 or labels.shape[2] != len(source_images):
        raise ValueError(f"labels of shape {labels.shape} do not match the {len(source_images)} source slices")
    # rt-utils takes the series as datasets in the mask's slice order and masks of (rows, columns, slices). It
    # scales the row direction (along a row: the column index) by PixelSpacing[0], which is the spacing between
    # rows, and the column direction by PixelSpacing[1]: contours of pixels that are not square come out
    # stretched. It reads PixelSpacing only for that matrix, so it gets copies with the two values swapped.
    series = [copy.copy(header) for header in source_images]
    for header in series:
        header.PixelSpacing = list(reversed([float(v) for v in header.PixelSpacing]))
    structure = RTStruct(series, ds_helper.create_rtstruct_dataset(series))
    first = source_images[0]
    # Study, frame of reference and RT series attributes rt-utils leaves out (Type 1 and 2, checked by dciodvfy)
    structure.ds.FrameOfReferenceUID = first.get("FrameOfReferenceUID", "")
    for keyword in ("PositionReferenceIndicator", "AccessionNumber", "ReferringPhysicianName"):
        setattr(structure.ds, keyword, first.get(keyword, ""))
    structure.ds.OperatorsName = ""
    structure.ds.SeriesDescription = "medunet contours"
    structure.ds.StructureSetLabel = "medunet"
    structure.ds.Manufacturer = "medunet"
    for k, spec in enumerate(segments):
        mask = np.ascontiguousarray((labels == spec.number).transpose(1, 0, 2))
        if mask.any():
            # no pin holes: rt-utils' pin-hole drawing fails on masks touching the image border; a hole is an inner
            # contour, which RT systems combine with the outer one (exclusive or)
            structure.add_roi(mask=mask, name=spec.label, color=_COLOURS[k % len(_COLOURS)], use_pin_hole=False)
    # rt-utils writes coordinates with full float precision; a DS value holds at most 16 characters (PS3.5 6.2),
    # which dciodvfy reports as an error and strict systems refuse: rounded to 16 characters here.
    for roi in structure.ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            contour.ContourData = [format_number_as_ds(float(v)) for v in contour.ContourData]
    return structure.ds


def write_rtstruct_for(
    labels: np.ndarray,
    meta: Mapping[str, Any],
    output_path: str | Path,
    segments: Sequence[SegmentSpec],
    headers: Sequence[pydicom.Dataset] | None = None,
) -> Path:
    """Writes the RTSTRUCT of ``labels`` for an image loaded from a DICOM series, from the image's metadata (the
    headers of its ``SourceFiles``, unless the caller passes them as ``headers``; see
    :func:`medunet.io.dicom_seg.write_dicom_seg_for`)."""
    if headers is None:
        headers = source_headers(meta["SourceFiles"], meta.get("SOPInstanceUIDs"))
    structure = build_rtstruct(labels, headers, segments)
    out = atomic_write(output_path, structure.save_as)
    logger.info("wrote RTSTRUCT %s (%d ROIs)", out, len(structure.StructureSetROISequence))
    return out
