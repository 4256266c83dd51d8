"""The bundle segmenter service: one case in, the bundle's outputs out, errors that name the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medunet.apps.segmenter import BundleSegmenter
from medunet.data.dicom import write_dicom_series
from tests.conftest import REPO


def test_segments_a_dicom_series_into_nifti_seg_and_overlay(segmenter: BundleSegmenter, tmp_path: Path) -> None:
    volume = np.random.default_rng(2).integers(0, 300, size=(20, 18, 6)).astype(np.float32)
    write_dicom_series(volume, tmp_path / "in" / "case1", modality="MR", rescale=(1.0, 0.0))
    written = segmenter.segment(tmp_path / "in" / "case1", tmp_path / "out")
    names = sorted(
        f"case1_{end}"
        for end in (
            "instances.csv",
            "instances.json",
            "instances.nii.gz",
            "measurements.json",
            "overlay.png",
            "rtstruct.dcm",
            "seg.dcm",
            "seg.nii.gz",
            "sr.dcm",
        )
    )
    assert sorted(p.name for p in written) == names
    assert all(p.parent == tmp_path / "out" and p.is_file() for p in written)
    again = segmenter.segment(tmp_path / "in" / "case1", tmp_path / "out2")  # the staging folder is emptied
    assert len(again) == len(names)


def test_bad_bundle_checkpoint_and_case_are_named(segmenter: BundleSegmenter, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="must be a medunet bundle folder"):
        BundleSegmenter(tmp_path, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist"):
        BundleSegmenter(REPO / "bundles" / "unet3d", tmp_path / "missing.pt")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    with pytest.raises((ValueError, FileNotFoundError), match="notes"):
        segmenter.segment(tmp_path / "notes", tmp_path / "out")
