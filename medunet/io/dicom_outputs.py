"""The DICOM objects of one segmented series, written together: the SEG, its measurement report (SR) and, when
asked, the contours (RTSTRUCT), from the image's metadata and the source slices' headers, read once.

Each object is built by its own module (:mod:`medunet.io.dicom_seg`, :mod:`medunet.io.dicom_sr`,
:mod:`medunet.io.rtstruct`); this one decides what is written and in which order: the contours are traced first, so
that the SR can note what they leave out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medunet.io.dicom_derived import SegmentSpec, source_headers
from medunet.io.dicom_seg import build_dicom_seg
from medunet.io.dicom_sr import build_measurement_report
from medunet.io.rtstruct import ContourLimits, trace_contours, write_rtstruct_for
from medunet.utils.files import atomic_write

__all__ = ["write_dicom_outputs"]

logger = logging.getLogger(__name__)


def write_dicom_outputs(
    labels: np.ndarray,
    meta: Mapping[str, Any],
    output_dir: str | Path,
    name: str,
    segments: Sequence[SegmentSpec],
    measurements: Sequence[Mapping[str, Any]] | None = None,
    contours: ContourLimits | None = None,
    **seg_kwargs: Any,
) -> list[Path]:
    """Writes ``<output_dir>/<name>_seg.dcm`` for an ``(x, y, z)`` label volume of an image loaded from a DICOM
    series (its metadata lists the source slices: ``SourceFiles`` and ``SOPInstanceUIDs``, in slice order); with
    ``measurements`` (:func:`medunet.metrics.segment_measurements`) also ``<name>_sr.dcm``, their TID 1500 report;
    with ``contours`` (the limits of the contour set) also ``<name>_rtstruct.dcm``, unless the segmentation is too
    fragmented for one (a warning says so). Every file is written to a temporary name and renamed.

    Args:
        seg_kwargs: passed to :func:`medunet.io.dicom_seg.build_dicom_seg` (``algorithm_name``, ...).

    Returns:
        The files written, SEG first.
    """
    out = Path(output_dir)
    headers = source_headers(meta["SourceFiles"], meta.get("SOPInstanceUIDs"))
    traced = None
    if contours is not None:
        traced = trace_contours(labels, segments, headers[0].PixelSpacing, contours)
    seg = build_dicom_seg(labels, headers, segments, **seg_kwargs)
    written = [atomic_write(out / f"{name}_seg.dcm", seg.save_as)]
    logger.info(
        "wrote DICOM SEG %s (%d frames) for series %s", written[0], int(seg.NumberOfFrames), seg.SeriesInstanceUID
    )
    if measurements is not None and len(seg.SegmentSequence):
        notes = None if traced is None else {number: traced.summary(number) for number in traced.contours}
        sr = build_measurement_report(seg, headers, measurements, segments, notes=notes)
        written.append(atomic_write(out / f"{name}_sr.dcm", sr.save_as))
        logger.info("wrote DICOM SR %s (measurements of %d segments)", written[-1], len(measurements))
    if traced is not None:
        rtstruct = write_rtstruct_for(labels, meta, out / f"{name}_rtstruct.dcm", segments, headers, traced)
        if rtstruct is not None:
            written.append(rtstruct)
    return written
