"""Data lists of the bundles: the training list (default data or a decathlon JSON) and inference folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medunet.data.datasets import make_default_dataset
from medunet.data.dicom import write_dicom_series
from medunet.engines import inference_datalist, resolve_datalist


def test_resolve_datalist_default_and_errors(tmp_path: Path) -> None:
    datalist = resolve_datalist("", tmp_path / "out", 2, {"n_training": 2, "n_validation": 1, "shape": [32, 32]})
    assert len(datalist["training"]) == 2
    assert Path(datalist["training"][0]["image"]).is_absolute()
    listing = make_default_dataset(tmp_path / "mine", n_training=1, n_validation=0, shape=(32, 32))
    again = resolve_datalist(listing.parent, tmp_path / "out2")
    assert again["validation"] == again["training"]  # no validation list: validate on the training cases
    with pytest.raises(FileNotFoundError, match=r"no dataset\.json there"):
        resolve_datalist(tmp_path / "nothing", tmp_path / "out3")


def test_inference_datalist(tmp_path: Path) -> None:
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [Path(c["image"]).name for c in inference_datalist(tmp_path)] == ["a.nii.gz", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no NIfTI"):
        inference_datalist(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inference_datalist(tmp_path / "missing")


def test_inference_datalist_finds_dicom_series_folders(tmp_path: Path) -> None:
    volume = np.zeros((8, 8, 3), dtype=np.float32)
    write_dicom_series(volume, tmp_path / "cases" / "series_a")
    (tmp_path / "cases" / "c.nii.gz").write_bytes(b"")
    cases = inference_datalist(tmp_path / "cases")
    assert [Path(c["image"]).name for c in cases] == ["c.nii.gz", "series_a"]
    # a folder holding DICOM files directly is itself the one case
    assert inference_datalist(tmp_path / "cases" / "series_a") == [{"image": str(tmp_path / "cases" / "series_a")}]
