"""DICOM RT Structure Sets (RTSTRUCT) of a segmentation, for radiotherapy systems, which read contours, not SEG.

Built with rt-utils (highdicom writes no RTSTRUCT): the structure set, one ROI per segment and one contour item per
planar contour, on the source grid. The contours themselves are traced here with OpenCV, because rt-utils traces
every staircase step of every connected component and offers no bound: a fragmented segmentation (a poorly
matched model on a new scanner) gave one contour per speck, 283 MB in 7 minutes for a 512x512x24 MR series, which
no planning system can use. So, per slice and segment (:class:`ContourLimits`):

- components and holes smaller than ``min_area_mm2`` are left out (holes filled): specks are not structures;
- each traced contour (through the centres of the border pixels) is simplified with the Douglas-Peucker algorithm
  (``cv2.approxPolyDP``) to within ``tolerance_px`` of a pixel;
- a segmentation that still needs more than ``max_contours`` contours or ``max_points`` points is too fragmented to
  be a useful contour set, and one of specks only has none: no RTSTRUCT is written, with a warning; the SEG still
  holds every voxel. A segment without contours gets no ROI.

Contours lose voxel detail by nature: a read-back onto the grid is close to the mask, not equal to it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from medunet.io.dicom_derived import SegmentSpec, source_headers
from medunet.utils.files import atomic_write

__all__ = [
    "ContourLimits",
    "ContourSet",
    "build_rtstruct",
    "read_rtstruct_mask",
    "trace_contours",
    "write_rtstruct_for",
]

logger = logging.getLogger(__name__)

_COLOURS = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]]


@dataclass(frozen=True)
class ContourLimits:
    """How a label volume becomes a bounded contour set.

    Attributes:
        tolerance_px: every simplified contour lies within this distance (in pixels) of the traced one.
        min_area_mm2: connected components (8-connected) and holes smaller than this, per slice, are left out.
        max_contours: more contours than this (all segments) is not a useful contour set: no RTSTRUCT.
        max_points: more contour points than this (all segments): no RTSTRUCT (about 30 bytes a point).
    """

    tolerance_px: float = 0.5
    min_area_mm2: float = 4.0
    max_contours: int = 5000
    max_points: int = 200_000

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance_px <= 2:
            raise ValueError(f"tolerance_px must be from 0 to 2 pixels, got {self.tolerance_px}")
        if self.min_area_mm2 < 0:
            raise ValueError(f"min_area_mm2 must be >= 0, got {self.min_area_mm2}")
        if self.max_contours < 1 or self.max_points < 1:
            raise ValueError(f"max_contours and max_points must be >= 1, got {self.max_contours}, {self.max_points}")


@dataclass
class ContourSet:
    """The traced contours of a label volume: per segment number, per slice, a list of ``(n, 2)`` arrays of
    pixel coordinates (column, row), and per segment number the specks and holes left out on the way."""

    limits: ContourLimits = field(default_factory=ContourLimits)
    contours: dict[int, list[list[np.ndarray]]] = field(default_factory=dict)
    specks: dict[int, int] = field(default_factory=dict)
    holes: dict[int, int] = field(default_factory=dict)

    def n_contours(self, number: int | None = None) -> int:
        """Contours of segment ``number``, or of all segments."""
        numbers = self.contours if number is None else [number]
        return sum(len(c) for n in numbers for c in self.contours.get(n, []))

    def n_points(self, number: int | None = None) -> int:
        numbers = self.contours if number is None else [number]
        return sum(len(p) for n in numbers for c in self.contours.get(n, []) for p in c)

    @property
    def too_fragmented(self) -> bool:
        return self.n_contours() > self.limits.max_contours or self.n_points() > self.limits.max_points

    @property
    def writable(self) -> bool:
        """Whether the contours make an RTSTRUCT: some are left, and not too many."""
        return self.n_contours() > 0 and not self.too_fragmented

    def summary(self, number: int | None = None) -> str:
        """One line for the log (all segments) or the SR (segment ``number``): what the contours hold and what
        was left out."""
        limits = self.limits
        specks = sum(self.specks.values()) if number is None else self.specks.get(number, 0)
        holes = sum(self.holes.values()) if number is None else self.holes.get(number, 0)
        text = (
            f"RTSTRUCT contours: {self.n_contours(number)} contours of {self.n_points(number)} points, simplified "
            f"within {limits.tolerance_px:g} px; {specks} specks and {holes} holes under {limits.min_area_mm2:g} mm2 "
            "left out"
        )
        if self.n_contours() == 0:
            text += "; not written: no contour is left (the SEG holds the segmentation)"
        elif self.too_fragmented:
            text += (
                f"; not written: {self.n_contours()} contours of {self.n_points()} points in all, more than "
                f"{limits.max_contours} contours or {limits.max_points} points, is too fragmented to be a useful "
                "contour set (the SEG holds the segmentation)"
            )
        return text


def _clean_slice(mask: np.ndarray, min_pixels: float) -> tuple[np.ndarray, int, int]:
    """``mask`` without components and holes smaller than ``min_pixels``, and how many of each were removed."""
    import cv2

    specks = holes = 0
    if min_pixels <= 1:
        return mask, 0, 0
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_pixels) + 1
    if small.size:
        mask = mask & ~np.isin(labels, small)
        specks = int(small.size)
    # holes: 4-connected background components (the complement of 8-connected foreground) off the border
    _, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small = np.setdiff1d(np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_pixels) + 1, border)
    if small.size:
        mask = mask | np.isin(labels, small)
        holes = int(small.size)
    return mask, specks, holes


def trace_contours(
    labels: np.ndarray,
    segments: Sequence[SegmentSpec],
    pixel_spacing: Sequence[float],
    limits: ContourLimits | None = None,
) -> ContourSet:
    """The bounded contours of an ``(x, y, z)`` label volume, slice by slice (see :class:`ContourLimits`).

    Args:
        labels: segment numbers per voxel.
        segments: the segments to trace (absent ones get no entry).
        pixel_spacing: the two pixel spacings in mm (DICOM's PixelSpacing), for ``min_area_mm2``.
    """
    import cv2

    limits = limits or ContourLimits()
    result = ContourSet(limits=limits)
    rows, columns = (float(v) for v in pixel_spacing)
    min_pixels = limits.min_area_mm2 / (rows * columns)
    for spec in segments:
        if not (labels == spec.number).any():
            continue
        slices = []
        result.specks[spec.number] = result.holes[spec.number] = 0
        for k in range(labels.shape[2]):
            mask = np.ascontiguousarray((labels[:, :, k] == spec.number).T)  # (rows, columns)
            contours: list[np.ndarray] = []
            if mask.any():
                mask, specks, holes = _clean_slice(mask, min_pixels)
                result.specks[spec.number] += specks
                result.holes[spec.number] += holes
                # a hole is an inner contour, which RT systems combine with the outer one (exclusive or)
                traced, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
                for contour in traced:
                    simple = cv2.approxPolyDP(contour, limits.tolerance_px, True) if limits.tolerance_px else contour
                    contours.append((simple if len(simple) >= 3 else contour)[:, 0, :])
            slices.append(contours)
        result.contours[spec.number] = slices
    return result


def _check_shape(labels: np.ndarray, source_images: Sequence[pydicom.Dataset]) -> None:
    if labels.ndim != 3 or labels.shape[2] != len(source_images):
        raise ValueError(f"labels of shape {labels.shape} do not match the {len(source_images)} source slices")


def _ds_values(points: np.ndarray) -> list[str]:
    """Coordinates (mm) as DS strings: 4 decimals (0.1 µm), within the 16 characters a DS may hold (PS3.5 6.2)."""
    return [f"{v:.4f}" for v in points.ravel()]


def build_rtstruct(
    labels: np.ndarray,
    source_images: Sequence[pydicom.Dataset],
    segments: Sequence[SegmentSpec],
    contours: ContourSet | None = None,
) -> pydicom.Dataset:
    """The RTSTRUCT of an ``(x, y, z)`` label volume aligned with ``source_images`` (headers, in slice order):
    one ROI per segment present in ``labels``, with ``contours`` (default: :func:`trace_contours` with the default
    :class:`ContourLimits`).

    Raises:
        ValueError: the labels do not match the series; the contour set is empty or too fragmented to write.
    """
    from rt_utils import ds_helper, image_helper
    from rt_utils.rtstruct import RTStruct
    from rt_utils.utils import ROIData

    _check_shape(labels, source_images)
    if contours is None:
        contours = trace_contours(labels, segments, source_images[0].PixelSpacing)
    if not contours.writable:
        raise ValueError(contours.summary())
    # rt-utils scales the row direction (along a row: the column index) by PixelSpacing[0], which is the spacing
    # between rows, and the column direction by PixelSpacing[1]: contours of pixels that are not square would come
    # out stretched. It reads PixelSpacing only for that matrix, so it gets copies with the two values swapped.
    series = [copy.copy(header) for header in source_images]
    for header in series:
        header.PixelSpacing = list(reversed([float(v) for v in header.PixelSpacing]))
    structure = RTStruct(series, ds_helper.create_rtstruct_dataset(series))
    to_patient = image_helper.get_pixel_to_patient_transformation_matrix(series).astype(np.float64)
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
        if not contours.n_contours(spec.number):  # absent, or only specks
            continue
        roi = ROIData(
            mask=None, color=_COLOURS[k % len(_COLOURS)], number=len(structure.ds.StructureSetROISequence) + 1,
            name=spec.label, frame_of_reference_uid=structure.frame_of_reference_uid,
        )  # fmt: skip
        items = pydicom.Sequence()
        for z, (header, slice_contours) in enumerate(zip(series, contours.contours[spec.number])):
            for points in slice_contours:
                voxels = np.c_[points.astype(np.float64), np.full(len(points), z), np.ones(len(points))]
                item = ds_helper.create_contour(header, [])
                item.NumberOfContourPoints = len(points)
                item.ContourData = _ds_values((voxels @ to_patient.T)[:, :3])
                items.append(item)
        roi_contour = pydicom.Dataset()
        roi_contour.ROIDisplayColor = roi.color
        roi_contour.ContourSequence = items
        roi_contour.ReferencedROINumber = str(roi.number)
        structure.ds.ROIContourSequence.append(roi_contour)
        structure.ds.StructureSetROISequence.append(ds_helper.create_structure_set_roi(roi))
        structure.ds.RTROIObservationsSequence.append(ds_helper.create_rtroi_observation(roi))
    return structure.ds


def write_rtstruct_for(
    labels: np.ndarray,
    meta: Mapping[str, Any],
    output_path: str | Path,
    segments: Sequence[SegmentSpec],
    headers: Sequence[pydicom.Dataset] | None = None,
    contours: ContourSet | None = None,
    limits: ContourLimits | None = None,
) -> Path | None:
    """Writes the RTSTRUCT of ``labels`` for an image loaded from a DICOM series, from the image's metadata (the
    headers of its ``SourceFiles``, unless the caller passes them as ``headers``; see
    :func:`medunet.io.dicom_outputs.write_dicom_outputs`). ``contours``: those of :func:`trace_contours` when the caller
    traced them already (e.g. to report them in the SR), else traced here within ``limits``.

    Returns:
        The file written, or None (with a warning) when no contour is left or the segmentation is too fragmented
        for a contour set.
    """
    if headers is None:
        headers = source_headers(meta["SourceFiles"], meta.get("SOPInstanceUIDs"))
    _check_shape(labels, headers)
    if contours is None:
        contours = trace_contours(labels, segments, headers[0].PixelSpacing, limits)
    if not contours.writable:
        logger.warning("no RTSTRUCT %s: %s", Path(output_path).name, contours.summary())
        return None
    structure = build_rtstruct(labels, headers, segments, contours)
    out = atomic_write(output_path, structure.save_as)
    logger.info("wrote RTSTRUCT %s (%d ROIs); %s", out, len(structure.StructureSetROISequence), contours.summary())
    return out


_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_rtstruct_mask(path: str | Path, roi_name: str, affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The contours of the ROI ``roi_name`` of an RTSTRUCT filled on an image grid: ``affine`` (voxel to RAS mm,
    medunet's and MONAI's convention) and spatial ``shape`` ``(x, y, z)``; a voxel is inside where its centre is
    inside a contour or on it. The contours are mapped with the image's own geometry, so a contour placed wrongly
    shows as a low overlap with the mask it came from.

    Raises:
        KeyError: no ROI of that name.
    """
    from skimage.draw import polygon

    ds = pydicom.dcmread(path)
    numbers = [r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == roi_name]
    if not numbers:
        raise KeyError(f"{path}: no ROI named {roi_name!r}; ROIs: {[r.ROIName for r in ds.StructureSetROISequence]}")
    roi = next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == numbers[0])
    to_voxel = np.linalg.inv(_RAS_TO_LPS @ np.asarray(affine, np.float64))  # contour points are in LPS
    filled, edges = np.zeros(tuple(shape), bool), np.zeros(tuple(shape), bool)
    for contour in roi.get("ContourSequence", []):
        points = np.asarray(contour.ContourData, np.float64).reshape(-1, 3)
        voxels = (to_voxel @ np.c_[points, np.ones(len(points))].T)[:3]
        k = round(float(voxels[2].mean()))
        rr, cc = polygon(voxels[0], voxels[1], filled.shape[:2])
        inside = np.zeros(filled.shape[:2], bool)
        inside[rr, cc] = True
        filled[:, :, k] ^= inside  # an inner contour (a hole) is combined with the outer one by exclusive or
        edge = np.round(voxels[:2]).astype(int)  # contours run through the centres of the object's border voxels
        edges[np.clip(edge[0], 0, filled.shape[0] - 1), np.clip(edge[1], 0, filled.shape[1] - 1), k] = True
    return filled | edges
