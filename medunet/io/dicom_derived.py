"""What the DICOM objects medunet derives from a segmented series share: the segments and their codes, the
source slices' headers, the derived series' numbers, and the person names a writer must copy as they are.

The SEG (:mod:`medunet.io.dicom_seg`), the measurement report (:mod:`medunet.io.dicom_sr`) and the contours
(:mod:`medunet.io.rtstruct`) are peers over this module; :mod:`medunet.io.dicom_outputs` writes them together.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom

from medunet.io.dicom_series import DicomSeriesError, read_dicom_header

__all__ = ["SegmentSpec", "derived_series_number", "segments_from_metadata", "single_valued_names", "source_headers"]

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


def derived_series_number(source: pydicom.Dataset, offset: int, fallback: int) -> int:
    """The SeriesNumber of an object derived from the series whose first header is ``source``: its SeriesNumber
    plus ``offset``, ``fallback`` when it has none."""
    try:
        return offset + int(source.get("SeriesNumber"))
    except (TypeError, ValueError):
        return fallback


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
