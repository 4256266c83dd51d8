"""The DICOM objects of one segmented series written together: SEG, SR and, when asked, RTSTRUCT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medunet.data.dicom import write_dicom_series
from medunet.io import load_image
from medunet.io.dicom_derived import SegmentSpec
from medunet.io.dicom_outputs import write_dicom_outputs
from medunet.io.rtstruct import ContourLimits
from medunet.metrics import segment_measurements


def _case(folder: Path) -> tuple[object, np.ndarray]:
    write_dicom_series(np.zeros((32, 32, 3), np.float32), folder, spacing=(1.0, 1.0, 3.0), modality="MR")
    return load_image(folder), np.zeros((32, 32, 3), np.uint8)


def test_seg_sr_and_contours_reference_one_series(tmp_path: Path) -> None:
    image, labels = _case(tmp_path / "mr")
    labels[8:20, 8:20] = 1
    records = segment_measurements(labels, np.asarray(image.affine), np.asarray(image)[0])
    written = write_dicom_outputs(labels, image.meta, tmp_path / "out", "mr", [SegmentSpec(1, "lesion")], records,
                                  ContourLimits())  # fmt: skip
    assert [p.name for p in written] == ["mr_seg.dcm", "mr_sr.dcm", "mr_rtstruct.dcm"]
    seg, sr, rt = (pydicom.dcmread(p) for p in written)
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == rt.StudyInstanceUID == image.meta["StudyInstanceUID"]
    assert seg.SeriesInstanceUID != sr.SeriesInstanceUID != rt.SeriesInstanceUID


def test_no_rtstruct_without_contours_and_no_sr_without_measurements(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image, labels = _case(tmp_path / "mr")
    labels[::4, ::4] = 1  # one-voxel specks only
    with caplog.at_level("WARNING", logger="medunet.io.rtstruct"):
        written = write_dicom_outputs(labels, image.meta, tmp_path / "out", "mr", [SegmentSpec(1, "x")], None,
                                      ContourLimits())  # fmt: skip
    assert [p.name for p in written] == ["mr_seg.dcm"]
    assert "no RTSTRUCT mr_rtstruct.dcm" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mr_seg.dcm"]
