"""A study given as several DICOM series becomes one multi-channel image on the grid of a reference series.

The series of one MR study (a post-contrast T1, a FLAIR registered to it, a tumour mask) share a frame of reference
but rarely their exact voxel grids: slice positions differ by a few mm, orientations may be oblique. Each channel is
resampled into the reference series' world grid (linear for images, nearest neighbour for a label series) by
SimpleITK, which resamples through physical coordinates; medunet only chooses the series (SeriesDescription
patterns, the first one the reference) and checks that they belong together.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.config import PathLike
from monai.data import ImageReader
from monai.data.utils import affine_to_spacing

from medunet.io.dicom_series import (
    DicomSeriesError,
    DicomSeriesInfo,
    DicomVolume,
    read_dicom_header,
    read_dicom_series,
    scan_dicom_folder,
    volume_metadata,
)

__all__ = ["DicomStudyReader", "StudyChannels", "read_study_channels", "select_channel_series"]


@dataclass
class StudyChannels:
    """A study on its reference series' grid: ``image`` is ``(C, x, y, z)`` float32 (channels in the order of the
    patterns), ``label`` ``(x, y, z)`` uint8 (0/1) when a label series was asked for; ``affine_lps`` maps the
    reference's voxel indices to patient coordinates (mm, LPS)."""

    image: np.ndarray
    affine_lps: np.ndarray
    reference: DicomVolume
    channels: list[DicomSeriesInfo]
    label: np.ndarray | None = None
    label_series: DicomSeriesInfo | None = None


def _listing(series: Sequence[DicomSeriesInfo]) -> str:
    return "\n".join(f"  - {s.describe()}" for s in series)


def select_channel_series(
    series: Sequence[DicomSeriesInfo], patterns: Sequence[str], where: str | Path = "the study"
) -> list[DicomSeriesInfo]:
    """One series per pattern (a regular expression searched in SeriesDescription, as given: write ``(?i)`` for
    case-insensitive), in the patterns' order.

    Raises:
        DicomSeriesError: a pattern that matches no series or several, or one series matched by two patterns; the
            message lists every series found.
    """
    if not patterns:
        raise ValueError("give at least one SeriesDescription pattern (the first is the reference series)")
    chosen = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(f"channel pattern {pattern!r} is not a regular expression: {err}") from None
        matches = [s for s in series if regex.search(s.description)]
        if len(matches) != 1:
            problem = "matches no series" if not matches else f"matches {len(matches)} series"
            raise DicomSeriesError(
                f"channel pattern {pattern!r} {problem} in {where} (a pattern must match exactly one "
                f"SeriesDescription). Series found:\n{_listing(series)}"
            )
        if matches[0] in chosen:
            raise DicomSeriesError(
                f"channel pattern {pattern!r} matches series {matches[0].description!r}, which an earlier pattern "
                f"chose already; make the patterns tell the series apart. Series found:\n{_listing(series)}"
            )
        chosen.append(matches[0])
    return chosen


def _to_sitk(volume: DicomVolume) -> sitk.Image:
    """The volume as a SimpleITK image with its world geometry (SimpleITK's physical space is LPS, as DICOM's)."""
    affine = volume.affine_lps
    spacing = affine_to_spacing(affine, r=3)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0))).astype(np.float32))
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in (affine[:3, :3] / spacing).ravel()])
    return image


def _on_grid(moving: DicomVolume, reference: sitk.Image, nearest: bool) -> np.ndarray:
    """``moving`` resampled onto ``reference``'s grid, ``(x, y, z)``; voxels outside ``moving`` are 0."""
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    resampled = sitk.Resample(_to_sitk(moving), reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)
    return np.transpose(sitk.GetArrayFromImage(resampled), (2, 1, 0))


def _seg_files(root: Path, pattern: str) -> list[Path]:
    """The DICOM SEG objects below ``root`` whose SeriesDescription matches ``pattern``."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        header = read_dicom_header(path)
        if (
            header is not None
            and str(header.get("Modality", "")).upper() == "SEG"
            and re.search(pattern, str(header.get("SeriesDescription", "") or ""))
        ):
            found.append(path)
    return found


def _seg_label(path: Path, volumes: Sequence[DicomVolume], root: Path) -> DicomVolume:
    """A one-segment DICOM SEG as a 0/1 volume on the grid of the channel series it references."""
    import pydicom

    from medunet.io.dicom_seg import read_dicom_seg  # highdicom loads only when a SEG is read

    seg = pydicom.dcmread(path, stop_before_pixels=True)
    segments = [f"{s.SegmentNumber}: {s.SegmentLabel}" for s in seg.SegmentSequence]
    if len(segments) != 1:
        raise DicomSeriesError(
            f"DICOM SEG {path} holds {len(segments)} segments ({'; '.join(segments)}); a tumour label must be one "
            "segment (0 background, 1 tumour)"
        )
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    source = next((v for v in volumes if v.info.series_uid in referenced), None)
    if source is None:
        names = ", ".join(f"{v.info.description!r} ({v.info.series_uid})" for v in volumes)
        raise DicomSeriesError(
            f"DICOM SEG {path} references series {sorted(referenced)}, none of the channel series {names} of {root}: "
            "a SEG is read on the grid of the series it was drawn on"
        )
    labels = (read_dicom_seg(path, source.sop_instance_uids) > 0).astype(np.float32)
    info = DicomSeriesInfo(series_uid=str(seg.SeriesInstanceUID), modality="SEG",
                           description=str(seg.get("SeriesDescription", "") or ""),
                           study_uid=str(seg.StudyInstanceUID), files=(path,))  # fmt: skip
    return replace(source, array=labels, info=info)


def read_study_channels(
    folder: str | Path, channels: Sequence[str], label: str | None = None, recursive: bool = True
) -> StudyChannels:
    """Reads the series of ``folder`` that ``channels`` (and ``label``) name, on the first channel's grid.

    Args:
        folder: a study folder (any layout; every DICOM file below it is scanned).
        channels: SeriesDescription patterns (regular expressions), one per input channel; the first series is
            the reference whose grid the others are resampled into (linear interpolation).
        label: the pattern of a mask series (values 0/1) or of a DICOM SEG with one segment (drawn on one of the
            channel series), resampled by nearest neighbour.

    Raises:
        DicomSeriesError: a pattern that matches no series or several (every series is listed); series of other
            studies or frames of reference than the reference's; a mask with other values than 0 and 1.
    """
    root = Path(folder)
    found = scan_dicom_folder(root, recursive=recursive)
    segs = _seg_files(root, label) if label is not None else []
    if len(segs) > 1:
        raise DicomSeriesError(
            f"label pattern {label!r} matches {len(segs)} DICOM SEG objects in {root}: "
            + ", ".join(str(p) for p in segs)
        )
    image_patterns = [*channels, *([label] if label is not None and not segs else [])]
    chosen = select_channel_series(found, image_patterns, root)
    volumes = [read_dicom_series(info) for info in chosen]
    if segs:
        volumes.append(_seg_label(segs[0], volumes, root))
    reference = volumes[0]
    for volume in volumes[1:]:
        if volume.info.study_uid != reference.info.study_uid:
            raise DicomSeriesError(
                f"series {volume.info.description!r} belongs to study {volume.info.study_uid}, the reference series "
                f"{reference.info.description!r} to study {reference.info.study_uid}: the channels of one image must "
                f"come from one study ({root})"
            )
        if volume.frame_of_reference_uid != reference.frame_of_reference_uid:
            raise DicomSeriesError(
                f"series {volume.info.description!r} has FrameOfReferenceUID {volume.frame_of_reference_uid}, the "
                f"reference series {reference.info.description!r} {reference.frame_of_reference_uid}: their world "
                f"coordinates are not the same space, so they cannot be combined (register them first) ({root})"
            )
    grid = _to_sitk(reference)
    image = np.stack(
        [reference.array.astype(np.float32)] + [_on_grid(v, grid, nearest=False) for v in volumes[1 : len(channels)]]
    )
    result = StudyChannels(
        image=image, affine_lps=reference.affine_lps, reference=reference, channels=chosen[: len(channels)]
    )
    if label is not None:
        mask = volumes[-1]
        values = np.unique(mask.array)
        if not set(values.tolist()) <= {0, 1}:
            shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if len(values) > 8 else "")
            raise DicomSeriesError(
                f"mask series {mask.info.description!r} ({mask.files[0].parent}) has values {shown}; a tumour mask "
                "must hold 0 (background) and 1 (tumour) only"
            )
        result.label = _on_grid(mask, grid, nearest=True).astype(np.uint8)
        result.label_series = mask.info
    return result


class DicomStudyReader(ImageReader):
    """MONAI ``ImageReader`` for a study folder: the series that ``channels`` name as one ``(C, x, y, z)`` image on
    the first one's grid, or (``label`` given) that mask series alone on the same grid, ``(x, y, z)``. The
    metadata are the reference series' (its UIDs and files: what a DICOM SEG of the result references), with the
    channels' SeriesDescriptions in ``ChannelSeriesDescriptions``.

    Args:
        channels: SeriesDescription patterns (regular expressions), the first the reference series.
        label: a mask series' pattern: the reader then returns that mask (for a data list's ``label`` key).
        affine_lps_to_ras: the affine in RAS (MONAI's convention, default) or DICOM's LPS.
    """

    def __init__(self, channels: Sequence[str], label: str | None = None, affine_lps_to_ras: bool = True) -> None:
        super().__init__()
        if isinstance(channels, str) or not channels:
            raise ValueError(f"channels must be a list of SeriesDescription patterns, got {channels!r}")
        self.channels, self.label, self.affine_lps_to_ras = list(channels), label, affine_lps_to_ras

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return len(names) == 1 and Path(names[0]).is_dir()

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> StudyChannels:
        path = Path(data if isinstance(data, (str, os.PathLike)) else data[0])
        channels = self.channels[:1] if self.label is not None else self.channels
        return read_study_channels(path, channels, label=self.label)

    def get_data(self, img: StudyChannels) -> tuple[np.ndarray, dict[str, Any]]:
        if self.label is not None:
            if img.label is None:
                raise ValueError(f"{img.reference.files[0].parent}: the study was read without its mask series")
            return img.label, volume_metadata(img.reference, self.affine_lps_to_ras)
        meta = volume_metadata(img.reference, self.affine_lps_to_ras, channel_dim=0)
        meta["ChannelSeriesDescriptions"] = [c.description for c in img.channels]
        return img.image, meta
