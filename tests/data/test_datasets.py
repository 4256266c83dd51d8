"""The generated default data set and the data lists of the real sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from medunet.data.datasets import DATASETS, make_default_dataset
from medunet.io import load_image


def test_default_2d_dataset(tmp_path: Path) -> None:
    listing = make_default_dataset(tmp_path / "cells", n_training=3, n_validation=1, shape=(96, 80))
    train = load_decathlon_datalist(listing, data_list_key="training")
    assert len(train) == 3
    image = load_image(train[0]["image"])
    label = load_image(train[0]["label"], dtype=None)
    assert image.shape == (1, 80, 96)
    assert label.shape == (1, 80, 96)
    assert int(label.max()) > 5
    assert make_default_dataset(tmp_path / "cells", n_training=3, n_validation=1, shape=(96, 80)) == listing  # reused
    with pytest.raises(FileExistsError, match="not generated with these parameters"):
        make_default_dataset(tmp_path / "cells", n_training=4)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="is not empty"):
        make_default_dataset(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user data"


def test_default_3d_dataset_with_dicom_series_matches_nifti(tmp_path: Path) -> None:
    listing = make_default_dataset(
        tmp_path / "blobs", spatial_dims=3, n_training=1, n_validation=1, shape=(40, 32, 12), dicom=True
    )
    val = load_decathlon_datalist(listing, data_list_key="validation")[0]
    nifti = load_image(val["image"])
    series = load_image(Path(val["image"]).parent.parent / "dicom" / "blobs_001")
    np.testing.assert_allclose(np.asarray(series), np.asarray(nifti), atol=0.5)
    np.testing.assert_allclose(np.asarray(series.affine), np.asarray(nifti.affine), atol=1e-4)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_real_data_lists_point_to_files(name: str, shared_data: Path, tmp_path: Path) -> None:
    try:
        datalist = DATASETS[name](shared_data)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert datalist["training"]
    assert datalist["validation"]
    for item in datalist["training"] + datalist["validation"]:
        assert Path(item["image"]).exists()
        assert Path(item["label"]).exists()


def test_dsb2018_stage1_split_is_per_group_disjoint_and_repeatable(shared_data: Path) -> None:
    from medunet.data.datasets import dsb2018_stage1

    try:
        first = dsb2018_stage1(shared_data)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    train = {c["image"] for c in first["training"]}
    held = {c["image"] for c in first["validation"]}
    assert not train & held
    assert len(train) + len(held) == 610
    groups = {
        g: sum(c["group"] == g for c in first["validation"]) for g in ("fluorescence", "histology", "brightfield")
    }
    assert groups == {"fluorescence": 50, "histology": 10, "brightfield": 1}
    assert dsb2018_stage1(shared_data)["validation"] == first["validation"]
    assert dsb2018_stage1(shared_data, seed=1)["validation"] != first["validation"]
