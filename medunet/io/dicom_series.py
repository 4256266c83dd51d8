"""Loading DICOM series from folders: series selection, geometric slice order, rescale, geometry checks.

Written by hand because MONAI 1.6's readers fall short here: ``PydicomReader`` orders slices by
InstanceNumber only (a series whose numbers are shuffled loads scrambled with a wrong slice spacing)
and stacks every file of a folder into one volume even when the folder holds several series;
``ITKReader`` needs the ``itk`` package, which SimpleITK does not provide. :class:`DicomSeriesReader`
is a MONAI ``ImageReader``, so ``LoadImage(reader=DicomSeriesReader(...))`` works in bundle configs.

Geometry (DICOM PS3.3 C.7.6.2): the volume's x axis runs along the rows (ImageOrientationPatient[:3],
column spacing PixelSpacing[1]), y along the columns (ImageOrientationPatient[3:], row spacing
PixelSpacing[0]); slices are ordered by their position along the slice normal (row x column direction),
and the slice step is measured from ImagePositionPatient, not read from SliceThickness or
SpacingBetweenSlices. Affines are in LPS (DICOM) and converted to RAS for MONAI when asked.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.config import PathLike
from monai.data import ImageReader
from monai.data.utils import affine_to_spacing
from monai.utils import MetaKeys, SpaceKeys
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medunet.io.codecs import codec_hint
from medunet.utils.enums import IrregularSpacing, look_up
from medunet.utils.files import is_temporary

__all__ = [
    "DicomSeriesError",
    "DicomSeriesInfo",
    "DicomSeriesReader",
    "DicomVolume",
    "matching_series",
    "read_dicom_header",
    "read_dicom_series",
    "scan_dicom_folder",
    "select_series",
]

logger = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_TILT_TOLERANCE_DEG = 0.2


class DicomSeriesError(ValueError):
    """A DICOM folder or series that cannot be loaded as asked; the message says which file and why."""


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One series found in a folder (from headers only)."""

    series_uid: str
    modality: str
    description: str
    study_uid: str
    files: tuple[Path, ...]

    def describe(self) -> str:
        return (
            f"SeriesInstanceUID={self.series_uid} modality={self.modality or '?'} "
            f"description={self.description!r} slices={len(self.files)}"
        )


@dataclass
class DicomVolume:
    """A loaded series: ``array`` is ``(x, y, z)`` (columns, rows, slices), ``affine_lps`` maps voxel
    indices to patient coordinates in mm (LPS)."""

    array: np.ndarray
    affine_lps: np.ndarray
    info: DicomSeriesInfo
    sop_instance_uids: list[str]
    files: list[Path]
    frame_of_reference_uid: str
    headers: list[pydicom.Dataset] = field(repr=False)

    @property
    def spacing(self) -> tuple[float, float, float]:
        s = affine_to_spacing(self.affine_lps, r=3)
        return float(s[0]), float(s[1]), float(s[2])


# A DICOM file without the Part-10 preamble ("raw" dataset, as some older scanners and exporters write) starts
# with a group 0x0008 (or 0x0002) tag, little endian. GDCM reads such files; so does medunet.
_RAW_DICOM_STARTS = (b"\x08\x00", b"\x02\x00")


def _dcmread(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """pydicom's read, also of files without the Part-10 preamble and file meta; the transfer syntax of such a
    file is the encoding pydicom found (needed to decode its pixels)."""
    ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def read_dicom_header(path: Path) -> pydicom.Dataset | None:
    """The header of a DICOM file (with or without the Part-10 preamble), None for a file that is not DICOM."""
    try:
        with path.open("rb") as fh:
            preamble = fh.read(132)
    except OSError as err:
        raise DicomSeriesError(f"{path}: cannot be read ({err})") from err
    part10 = len(preamble) >= 132 and preamble[128:132] == b"DICM"
    if not part10 and preamble[:2] not in _RAW_DICOM_STARTS:
        return None
    try:
        header = _dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, struct.error) as err:
        if not part10:
            return None  # two bytes that looked like a tag, in a file that is not DICOM
        raise DicomSeriesError(f"{path}: corrupt DICOM file, the header cannot be parsed ({err})") from err
    if not part10 and "SOPInstanceUID" not in header:
        return None
    if part10:
        _check_complete(path, header)
    return header


def _check_complete(path: Path, header: pydicom.Dataset) -> None:
    """Refuses a Part-10 file whose header stops early. pydicom reads a file cut inside its header without
    complaint and returns the elements before the cut: an image slice without Rows and Columns would pass for a
    non-image object and be left out, and its series would then be refused for a gap, naming the wrong problem."""
    sop_class = str(header.get("SOPClassUID", "") or header.file_meta.get("MediaStorageSOPClassUID", ""))
    missing = [k for k in ("Rows", "Columns") if k not in header]
    if len(header) == 0 or (missing and "Image Storage" in pydicom.uid.UID(sop_class).name):
        what = "no data elements" if len(header) == 0 else f"no {' and '.join(missing)}"
        raise DicomSeriesError(
            f"{path}: the DICOM header ends early ({what}; the file has {path.stat().st_size} bytes): the file is "
            "truncated or incomplete. Copy it again from its source, or remove it from the folder"
        )


GENERATED_UID_PREFIX = "2.25."
"""Prefix of the UIDs medunet makes for series whose files carry none (UUID-derived UIDs, PS3.5 B.2)."""


def _geometry_series_uid(folder: Path, header: pydicom.Dataset) -> str:
    """A stable UID for the files of ``folder`` without SeriesInstanceUID that share modality, image size,
    orientation and pixel spacing (rounded): what can be one volume."""
    key = [str(folder.resolve()), str(header.get("Modality", ""))]
    for keyword in ("Rows", "Columns", "ImageOrientationPatient", "PixelSpacing"):
        value = header.get(keyword)
        values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
        key.append(",".join(f"{float(v):.4f}" if v not in (None, "") else "" for v in values))
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()
    return GENERATED_UID_PREFIX + str(int(digest[:30], 16))


def _is_source_image(header: pydicom.Dataset) -> bool:
    """Whether a DICOM object is an image to segment: it has a pixel matrix (an RTSTRUCT, SR, presentation
    state or key-object selection has none) and is not itself a segmentation. Such objects are sometimes
    exported with the image series' SeriesInstanceUID and would otherwise be read as one of its slices."""
    return "Rows" in header and "Columns" in header and str(header.get("Modality", "")).upper() != "SEG"


def scan_dicom_folder(folder: str | Path, recursive: bool = True) -> list[DicomSeriesInfo]:
    """The DICOM image series in ``folder``, largest first (non-DICOM files are ignored; DICOM objects that are
    not images, such as an RTSTRUCT, are logged and ignored).

    Raises:
        FileNotFoundError: the folder does not exist.
        DicomSeriesError: no DICOM file in it, or a corrupt DICOM file (named).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"DICOM folder {root} does not exist or is not a folder")
    candidates = sorted(
        p for p in (root.rglob("*") if recursive else root.iterdir()) if p.is_file() and not is_temporary(p)
    )  # a temporary of an interrupted atomic write is half a file
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    others: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for path in candidates:
        header = read_dicom_header(path)
        if header is None:
            continue
        file_meta = getattr(header, "file_meta", None)
        if file_meta is not None and str(file_meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS:
            continue  # a DICOMDIR index, not an image
        with _interpreting(path):
            if not _is_source_image(header):
                others[str(header.get("Modality", "") or "no modality")] += 1
                continue
            uid = header.get("SeriesInstanceUID")
            if not uid:  # an anonymised export that emptied the UIDs: grouped by geometry, as GDCM does
                uid = _geometry_series_uid(root, header)
                missing[uid] += 1
            groups.setdefault(str(uid), []).append((path, header))
    found_others = ", ".join(f"{n} {m}" for m, n in sorted(others.items()))
    if not groups:
        if others:
            raise DicomSeriesError(
                f"no DICOM images in {root}: its DICOM objects are not images ({found_others}); point to the "
                "folder that holds the image series"
            )
        raise DicomSeriesError(
            f"no DICOM files in {root} ({len(candidates)} files checked, none has the DICM preamble); "
            "point to the folder that holds the series"
        )
    if others:
        logger.info("%s: ignored DICOM objects that are not source images (%s)", root, found_others)
    if missing:
        logger.warning(
            "%s: %d DICOM files have no SeriesInstanceUID (an anonymised export?); grouped by modality, image size, "
            "orientation and pixel spacing into %d series with generated UIDs. Their segmentations are written as "
            "NIfTI only: a DICOM SEG must reference the source instances' UIDs",
            root,
            sum(missing.values()),
            len(missing),
        )
    series = []
    for uid, items in groups.items():
        first_path, first = items[0]
        with _interpreting(first_path):
            series.append(
                DicomSeriesInfo(
                    series_uid=uid,
                    modality=str(first.get("Modality", "") or ""),
                    description=str(first.get("SeriesDescription", "") or ""),
                    study_uid=str(first.get("StudyInstanceUID", "") or ""),
                    files=tuple(p for p, _ in items),
                )
            )
    return sorted(series, key=lambda s: (-len(s.files), s.series_uid))


def matching_series(
    series: Sequence[DicomSeriesInfo],
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
) -> list[DicomSeriesInfo]:
    """The series that match every criterion given: the UID, the modality (case-insensitive), a regular expression
    searched in SeriesDescription (case-insensitive)."""
    chosen = list(series)
    if series_uid is not None:
        chosen = [s for s in chosen if s.series_uid == series_uid]
    if modality is not None:
        chosen = [s for s in chosen if s.modality.upper() == modality.upper()]
    if description is not None:
        pattern = re.compile(description, re.IGNORECASE)
        chosen = [s for s in chosen if pattern.search(s.description)]
    return chosen


def select_series(
    series: Sequence[DicomSeriesInfo],
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    where: str | Path = "the folder",
) -> DicomSeriesInfo:
    """Picks one series by UID, or by modality and a SeriesDescription pattern (regular expression,
    case-insensitive); with no criteria the folder must hold exactly one series.

    Raises:
        DicomSeriesError: no series or several match; the message lists every series found.
    """
    chosen = matching_series(series, series_uid, modality, description)
    if len(chosen) == 1:
        return chosen[0]
    listing = "\n".join(f"  - {s.describe()}" for s in series)
    criteria = {
        k: v for k, v in (("series_uid", series_uid), ("modality", modality), ("description", description)) if v
    }
    if not chosen:
        problem = f"no series in {where} matches {criteria}"
    elif criteria:
        problem = f"{len(chosen)} series in {where} match {criteria}"
    else:
        problem = f"{where} holds {len(chosen)} DICOM series"
    raise DicomSeriesError(
        f"{problem}; choose one on the bundle command line with --series_uid UID (or --modality MR|CT|..., "
        f"--series_description REGEX), in Python with series_uid= (modality=, description=). Series found:\n{listing}"
    )


def _floats(header: pydicom.Dataset, keyword: str, path: Path, count: int) -> np.ndarray:
    value = header.get(keyword)
    values = (
        [] if value is None or value == "" else list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    )
    if len(values) != count:
        raise DicomSeriesError(
            f"{path}: missing or malformed {keyword} ({count} numbers needed for the volume geometry, found "
            f"{len(values)})"
        )
    try:
        numbers = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DicomSeriesError(f"{path}: malformed {keyword} {values!r} ({err})") from None
    if not np.isfinite(numbers).all():
        raise DicomSeriesError(
            f"{path}: {keyword} {numbers.tolist()} is not finite; the slice cannot be placed. Fix or remove this file."
        )
    return numbers


def _number(header: pydicom.Dataset, keyword: str, path: Path, default: float | None = None) -> float:
    """A finite single number of the header (``default`` when absent or empty)."""
    value = header.get(keyword)
    if value is None or value == "":
        if default is None:
            raise DicomSeriesError(f"{path}: {keyword} is missing; it is needed to read the slice")
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise DicomSeriesError(f"{path}: malformed {keyword} {value!r} ({err})") from None
    if not math.isfinite(number):
        raise DicomSeriesError(f"{path}: {keyword} {number} is not finite; fix or remove this file")
    return number


@contextmanager
def _interpreting(path: Path) -> Iterator[None]:
    """Names ``path`` in any error raised while its header is interpreted: pydicom converts values lazily, so
    a malformed value surfaces as a bare ValueError, TypeError or UnicodeDecodeError at first access."""
    try:
        yield
    except DicomSeriesError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, struct.error) as err:
        raise DicomSeriesError(
            f"{path}: the header cannot be interpreted ({type(err).__name__}: {err}); fix or remove this file"
        ) from err


def _pixels(dataset: pydicom.Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in dataset:
        raise DicomSeriesError(
            f"{path}: the file ends before its pixel data ({path.stat().st_size} bytes): it is truncated or "
            "incomplete. Copy it again from its source, or remove it from the folder"
        )
    try:
        pixels = dataset.pixel_array
    except Exception as err:  # pydicom raises many types for truncated or undecodable pixel data
        hint = codec_hint(dataset.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
        if hint:
            raise DicomSeriesError(f"{path}: pixel data cannot be decoded: {hint}") from err
        raise DicomSeriesError(f"{path}: pixel data cannot be decoded ({type(err).__name__}: {err})") from err
    if pixels.ndim != 2:
        raise DicomSeriesError(
            f"{path}: {pixels.ndim}-dimensional pixel data (multi-frame or colour) is not supported for series "
            "loading; only single-frame grayscale slices are"
        )
    slope = _number(dataset, "RescaleSlope", path, 1.0) or 1.0
    intercept = _number(dataset, "RescaleIntercept", path, 0.0)
    if slope != 1.0 or intercept != 0.0:
        return pixels.astype(np.float64) * slope + intercept
    return pixels


def read_dicom_series(
    info: DicomSeriesInfo,
    spacing_tolerance: float = 0.01,
    on_irregular: str | IrregularSpacing = IrregularSpacing.ERROR,
) -> DicomVolume:
    """Reads one series into an ``(x, y, z)`` array ordered by slice position.

    Rescale slope/intercept are applied per slice (the result is float32 where any slice has them,
    the stored integer type otherwise).

    Args:
        info: the series (see :func:`scan_dicom_folder`).
        spacing_tolerance: relative deviation of a slice step from the median step that counts as irregular.
        on_irregular: ``"error"`` (default) raises on uneven slice steps (a missing slice, a gap); ``"warn"``
            logs a warning and uses the median step, so voxel positions away from the first slice are then
            approximate.

    Raises:
        DicomSeriesError: inconsistent geometry between slices, duplicate positions, uneven spacing (with
            ``on_irregular="error"``), corrupt files; the message names the file or the slices.
    """
    policy = look_up(on_irregular, IrregularSpacing, "on_irregular")
    slices = []
    for path in info.files:
        try:
            ds = _dcmread(path)
        except (InvalidDicomError, OSError, ValueError, EOFError) as err:
            raise DicomSeriesError(f"{path}: corrupt DICOM file ({err})") from err
        slices.append((path, ds))
    records = []
    for path, ds in slices:
        with _interpreting(path):
            records.append(
                (
                    (int(_number(ds, "Rows", path)), int(_number(ds, "Columns", path))),
                    _floats(ds, "ImageOrientationPatient", path, 6),
                    _floats(ds, "PixelSpacing", path, 2),
                    _floats(ds, "ImagePositionPatient", path, 3),
                )
            )
    path0, ds0 = slices[0]
    shape, orientation, pixel_spacing, _ = records[0]
    for (path, _), (size, other_orientation, other_spacing, _) in zip(slices[1:], records[1:], strict=True):
        if size != shape:
            raise DicomSeriesError(f"{path}: {size[0]}x{size[1]} pixels, other slices of the series have {shape}")
        if not np.allclose(other_orientation, orientation, atol=1e-4):
            raise DicomSeriesError(f"{path}: ImageOrientationPatient differs from {path0}; not one volume")
        if not np.allclose(other_spacing, pixel_spacing, rtol=1e-4):
            raise DicomSeriesError(f"{path}: PixelSpacing differs from {path0}; not one volume")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 1e-6:
        raise DicomSeriesError(
            f"{path0}: ImageOrientationPatient {orientation.tolist()} has parallel or zero row and column directions"
        )
    positions = np.stack([r[3] for r in records])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    positions, along = positions[order], along[order]

    if len(slices) > 1:
        steps = np.diff(along)
        duplicate = np.flatnonzero(steps < 1e-3)
        if duplicate.size:
            i = int(duplicate[0])
            raise DicomSeriesError(
                f"{slices[i][0]} and {slices[i + 1][0]} are at the same slice position ({along[i]:.3f} mm along the "
                "normal): the folder mixes acquisitions of one series; separate them"
            )
        median = float(np.median(steps))
        irregular = np.flatnonzero(np.abs(steps - median) > spacing_tolerance * median)
        if irregular.size:
            details = ", ".join(
                f"{steps[i]:.3f} mm between {slices[i][0].name} and {slices[i + 1][0].name}" for i in irregular[:5]
            )
            message = (
                f"series {info.series_uid} ({info.description!r}): slices are not evenly spaced; the step is "
                f"{median:.3f} mm except {details}. A slice is missing or the series has gaps."
            )
            if policy == IrregularSpacing.ERROR:
                raise DicomSeriesError(message + " Pass on_irregular='warn' to load it with the median step anyway.")
            logger.warning(
                "%s Loading with the median step: positions away from the first slice are approximate.", message
            )
        step_vector = (positions[-1] - positions[0]) / (len(slices) - 1)
        tilt = np.degrees(np.arccos(np.clip(np.dot(step_vector, normal) / np.linalg.norm(step_vector), -1, 1)))
        if irregular.size or tilt < _TILT_TOLERANCE_DEG:
            # Positions stored with few decimals wobble by hundredths of a degree: keep the grid orthogonal.
            step_vector = normal * median
        else:
            logger.warning(
                "series %s: slices are offset along the image plane (gantry tilt %.2f deg); the affine is sheared "
                "to keep every voxel at its true position",
                info.series_uid,
                tilt,
            )
    else:
        with _interpreting(path0):
            thickness = _number(ds0, "SpacingBetweenSlices", path0, 0.0) or _number(ds0, "SliceThickness", path0, 1.0)
            thickness = thickness or 1.0
        step_vector = normal * thickness

    affine = np.eye(4)
    affine[:3, 0] = row_dir * pixel_spacing[1]
    affine[:3, 1] = col_dir * pixel_spacing[0]
    affine[:3, 2] = step_vector
    affine[:3, 3] = positions[0]

    planes, frame_uids, sop_uids = [], [], []
    for path, ds in slices:
        with _interpreting(path):
            planes.append(_pixels(ds, path))
            if planes[-1].shape != shape:
                raise DicomSeriesError(f"{path}: pixel data of {planes[-1].shape} pixels, the header says {shape}")
            frame_uids.append(str(ds.get("FrameOfReferenceUID", "") or ""))
            sop_uids.append(str(ds.get("SOPInstanceUID", "") or ""))  # empty in some anonymised exports
    rescaled = any(p.dtype.kind == "f" for p in planes)
    volume = np.stack([p.T for p in planes], axis=-1)
    if rescaled:
        volume = volume.astype(np.float32)
    others = [path.name for (path, _), uid in zip(slices, frame_uids, strict=True) if uid != frame_uids[0]]
    if others:
        raise DicomSeriesError(
            f"series {info.series_uid} in {slices[0][0].parent}: {', '.join(others[:5])} have another "
            f"FrameOfReferenceUID than {slices[0][0].name} ({frame_uids[0]!r}); the slices are not one volume"
        )
    return DicomVolume(
        array=volume,
        affine_lps=affine,
        info=info,
        sop_instance_uids=sop_uids,
        files=[p for p, _ in slices],
        frame_of_reference_uid=frame_uids[0],
        headers=[ds for _, ds in slices],
    )


class DicomSeriesReader(ImageReader):
    """MONAI ``ImageReader`` for a folder holding a DICOM series (see the module docstring).

    Args:
        series_uid / modality / description: which series to load when the folder holds several
            (``description`` is a case-insensitive regular expression on SeriesDescription).
        on_irregular: ``"error"`` or ``"warn"`` for unevenly spaced slices (see :func:`read_dicom_series`).
        affine_lps_to_ras: give the affine in RAS (MONAI's convention, default) rather than DICOM's LPS.
    """

    def __init__(
        self,
        series_uid: str | None = None,
        modality: str | None = None,
        description: str | None = None,
        on_irregular: str | IrregularSpacing = IrregularSpacing.ERROR,
        affine_lps_to_ras: bool = True,
    ) -> None:
        super().__init__()
        self.series_uid = series_uid
        self.modality = modality
        self.description = description
        self.on_irregular = look_up(on_irregular, IrregularSpacing, "on_irregular")
        self.affine_lps_to_ras = affine_lps_to_ras

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return len(names) == 1 and (Path(names[0]).is_dir() or str(names[0]).lower().endswith(".dcm"))

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> DicomVolume:
        path = Path(data if isinstance(data, (str, os.PathLike)) else data[0])
        series_uid = self.series_uid
        if path.is_file():  # one file of a series: load the series it belongs to
            header = read_dicom_header(path)
            if header is None:
                raise DicomSeriesError(f"{path} is not a DICOM file")
            series_uid = series_uid or str(header.SeriesInstanceUID)
            path = path.parent
        info = select_series(scan_dicom_folder(path), series_uid, self.modality, self.description, where=path)
        return read_dicom_series(info, on_irregular=self.on_irregular)

    def get_data(self, img: DicomVolume) -> tuple[np.ndarray, dict[str, Any]]:
        return img.array, volume_metadata(img, self.affine_lps_to_ras)


def volume_metadata(
    volume: DicomVolume, affine_lps_to_ras: bool = True, channel_dim: float | None = None
) -> dict[str, Any]:
    """MONAI's image metadata of a loaded series (affine in RAS or LPS) plus the DICOM identifiers that a SEG, an
    RTSTRUCT or a report must reference. ``channel_dim``: the array's channel axis (``None``: no channel axis)."""
    affine = _LPS_TO_RAS @ volume.affine_lps if affine_lps_to_ras else volume.affine_lps.copy()
    return {
        MetaKeys.AFFINE: affine,
        MetaKeys.ORIGINAL_AFFINE: affine.copy(),
        MetaKeys.SPATIAL_SHAPE: np.asarray(volume.array.shape),
        MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if channel_dim is None else channel_dim,
        MetaKeys.SPACE: SpaceKeys.RAS if affine_lps_to_ras else SpaceKeys.LPS,
        "spacing": np.asarray(volume.spacing),
        "SeriesInstanceUID": volume.info.series_uid,
        "StudyInstanceUID": volume.info.study_uid,
        "FrameOfReferenceUID": volume.frame_of_reference_uid,
        "Modality": volume.info.modality,
        "SeriesDescription": volume.info.description,
        "SOPInstanceUIDs": list(volume.sop_instance_uids),
        "SourceFiles": [str(p) for p in volume.files],  # in slice order: what a SEG or report refers to
    }
