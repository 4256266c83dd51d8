"""RTSTRUCT contours of a segmentation: valid for dciodvfy, and read back onto the source grid (with medunet's
geometry, not rt-utils') they cover the mask (Dice >= 0.95 for smooth objects)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from skimage.draw import polygon

from medunet.data.dicom import write_dicom_series
from medunet.io import load_image
from medunet.io.dicom_seg import SegmentSpec
from medunet.io.rtstruct import write_rtstruct_for
from tests.conftest import require
from tests.io.test_dicom_seg import dciodvfy_errors

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_contours(path: Path, image: object, roi_name: str) -> np.ndarray:
    """The ROI's contours filled on the image's voxel grid ``(x, y, z)``, by inverting the image's affine."""
    ds = pydicom.dcmread(path)
    number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == roi_name)
    contours = next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == number).ContourSequence
    to_voxel = np.linalg.inv(_RAS_TO_LPS @ np.asarray(image.affine, np.float64))  # contour points are in LPS
    shape = np.asarray(image).shape[1:]
    mask = np.zeros(shape, bool)
    for contour in contours:
        points = np.asarray(contour.ContourData, np.float64).reshape(-1, 3)
        voxels = (to_voxel @ np.c_[points, np.ones(len(points))].T)[:3]
        k = round(float(voxels[2].mean()))
        rr, cc = polygon(voxels[0], voxels[1], shape[:2])
        mask[rr, cc, k] = True
        mask[np.clip(np.round(voxels[0]).astype(int), 0, shape[0] - 1),
             np.clip(np.round(voxels[1]).astype(int), 0, shape[1] - 1), k] = True  # the contour's own voxels  # fmt: skip
    return mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _ellipsoids(shape: tuple[int, int, int]) -> np.ndarray:
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint8)
    labels[((x - 0.45 * shape[0]) / (0.25 * shape[0])) ** 2 + ((y - 0.5 * shape[1]) / (0.2 * shape[1])) ** 2
           + ((z - 0.5 * shape[2]) / (0.3 * shape[2])) ** 2 < 1] = 1  # fmt: skip
    labels[((x - 0.8 * shape[0]) / 12) ** 2 + ((y - 0.2 * shape[1]) / 9) ** 2 < 1] = 2
    return labels


def test_synthetic_non_square_series_contours_validate_and_read_back(tmp_path: Path) -> None:
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a sagittal acquisition
    write_dicom_series(np.zeros((96, 70, 12), np.float32), tmp_path / "mr", spacing=(0.9, 0.7, 3.0),
                       direction=direction, modality="MR", rescale=(1.0, 0.0))  # fmt: skip
    image = load_image(tmp_path / "mr")
    labels = _ellipsoids((96, 70, 12))
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
    labels = _ellipsoids(np.asarray(image).shape[1:])
    out = write_rtstruct_for(labels, image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "lesion"), SegmentSpec(2, "rod")])
    assert not dciodvfy_errors(out)
    assert dice(read_contours(out, image, "lesion"), labels == 1) >= 0.95


def test_labels_must_match_the_source_slices(tmp_path: Path) -> None:
    write_dicom_series(np.zeros((8, 8, 3), np.float32), tmp_path / "ct")
    image = load_image(tmp_path / "ct")
    with pytest.raises(ValueError, match=r"labels of shape \(8, 8, 2\) do not match the 3 source slices"):
        write_rtstruct_for(np.zeros((8, 8, 2), np.uint8), image.meta, tmp_path / "rt.dcm", [SegmentSpec(1, "x")])
