"""RTSTRUCT contours of a segmentation: valid for dciodvfy, and read back onto the source grid (with medunet's
geometry, not rt-utils') they cover the mask (Dice >= 0.95 for smooth objects)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from medunet.data.dicom import write_dicom_series
from medunet.data.synthetic import ellipsoid_labels
from medunet.io import load_image
from medunet.io.dicom_derived import SegmentSpec
from medunet.io.rtstruct import ContourLimits, read_rtstruct_mask, trace_contours, write_rtstruct_for
from tests.conftest import require
from tests.io.test_dicom_seg import dciodvfy_errors


def read_contours(path: Path, image: object, roi_name: str) -> np.ndarray:
    return read_rtstruct_mask(path, roi_name, np.asarray(image.affine), np.asarray(image).shape[1:])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_synthetic_non_square_series_contours_validate_and_read_back(tmp_path: Path) -> None:
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a sagittal acquisition
    write_dicom_series(np.zeros((96, 70, 12), np.float32), tmp_path / "mr", spacing=(0.9, 0.7, 3.0),
                       direction=direction, modality="MR", rescale=(1.0, 0.0))  # fmt: skip
    image = load_image(tmp_path / "mr")
    labels = ellipsoid_labels((96, 70, 12))
    segments = [SegmentSpec(1, "lesion"), SegmentSpec(2, "rod"), SegmentSpec(3, "absent")]
    out = write_rtstruct_for(labels, image.meta, tmp_path / "rt.dcm", segments)
    assert not dciodvfy_errors(out)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "RTSTRUCT"
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["lesion", "rod"]  # no ROI for an absent segment
    assert ds.StudyInstanceUID == image.meta["StudyInstanceUID"]
    referenced = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == image.meta["SeriesInstanceUID"]
    for number, name in ((1, "lesion"), (2, "rod")):
        assert dice(read_contours(out, image, name), labels == number) >= 0.95, name


def test_tcia_series_contours_read_back(shared_data: Path, tmp_path: Path) -> None:
    series = require(shared_data / "tcia_pgbm001_dicom" / "T1post")
    image = load_image(series)
    labels = ellipsoid_labels(np.asarray(image).shape[1:])
    out = write_rtstruct_for(labels, image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "lesion"), SegmentSpec(2, "rod")])
    assert not dciodvfy_errors(out)
    assert dice(read_contours(out, image, "lesion"), labels == 1) >= 0.95


def test_labels_must_match_the_source_slices(tmp_path: Path) -> None:
    write_dicom_series(np.zeros((8, 8, 3), np.float32), tmp_path / "ct")
    image = load_image(tmp_path / "ct")
    with pytest.raises(ValueError, match=r"labels of shape \(8, 8, 2\) do not match the 3 source slices"):
        write_rtstruct_for(np.zeros((8, 8, 2), np.uint8), image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "x")])


def _lesion_with_specks(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid lesion with a one-voxel hole in every slice, and 3 one-voxel specks per slice beside it."""
    lesion = ellipsoid_labels(shape) == 1
    labels = lesion.astype(np.uint8)
    for k in range(shape[2]):
        xs, ys = np.nonzero(lesion[:, :, k])
        if xs.size > 40:
            labels[int(xs.mean()), int(ys.mean()), k] = 0
        labels[[2, 2, 5], [2, 6, 2], k] = 1
    return labels, lesion


def test_specks_and_small_holes_are_left_out_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_dicom_series(np.zeros((96, 70, 12), np.float32), tmp_path / "mr", spacing=(0.9, 0.7, 3.0), modality="MR")
    image = load_image(tmp_path / "mr")
    labels, lesion = _lesion_with_specks((96, 70, 12))
    with caplog.at_level("INFO", logger="medunet.io.rtstruct"):
        out = write_rtstruct_for(labels, image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "lesion")])
    assert out is not None
    slices_with_lesion = int(lesion.any(axis=(0, 1)).sum())
    assert len(pydicom.dcmread(out).ROIContourSequence[0].ContourSequence) == slices_with_lesion  # no speck, no hole
    assert dice(read_contours(out, image, "lesion"), lesion) >= 0.95
    holes = sum(int(lesion[:, :, k].sum() > 40) for k in range(12))
    assert f"{3 * 12} specks and {holes} holes under 4 mm2 left out" in caplog.text


def test_contours_are_simplified_within_a_fraction_of_a_pixel() -> None:
    labels = ellipsoid_labels((96, 70, 12))
    segments = [SegmentSpec(1, "lesion")]
    traced = trace_contours(labels, segments, (1.0, 1.0), ContourLimits(tolerance_px=0.0))
    simple = trace_contours(labels, segments, (1.0, 1.0), ContourLimits(tolerance_px=0.5))
    assert simple.n_contours() == traced.n_contours()
    assert simple.n_points() < traced.n_points() / 3
    for full, reduced in zip(traced.contours[1], simple.contours[1]):
        for a, b in zip(full, reduced):  # every traced point lies within 0.5 px of the simplified polygon
            polygon_ = b.reshape(-1, 1, 2).astype(np.float32)
            distances = [abs(cv2.pointPolygonTest(polygon_, (float(x), float(y)), True)) for x, y in a]
            assert max(distances) <= 0.5 + 1e-6


def test_a_segmentation_too_fragmented_for_contours_gets_none_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_dicom_series(np.zeros((64, 64, 4), np.float32), tmp_path / "ct", spacing=(1.0, 1.0, 3.0))
    image = load_image(tmp_path / "ct")
    blobs = np.zeros((64, 64, 4), np.uint8)
    blobs[::4, ::4] = blobs[1::4, ::4] = blobs[::4, 1::4] = blobs[1::4, 1::4] = 1  # 2x2 mm blobs, 4 mm2 each
    limits = ContourLimits(max_contours=100)
    with caplog.at_level("WARNING", logger="medunet.io.rtstruct"):
        out = write_rtstruct_for(blobs, image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "x")], limits=limits)
    assert out is None
    assert not (tmp_path / "rt.dcm").exists()
    assert "1024 contours of 4096 points in all, more than 100 contours or 200000 points" in caplog.text
    specks = np.zeros_like(blobs)
    specks[::4, ::4] = 1  # one voxel each: all left out
    with caplog.at_level("WARNING", logger="medunet.io.rtstruct"):
        assert write_rtstruct_for(specks, image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "x")]) is None
    assert "1024 specks and 0 holes under 4 mm2 left out; not written: no contour is left" in caplog.text
