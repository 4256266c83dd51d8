"""Image/label pairs for training: another grid, or a label convention the rule does not expect, is a clear
error naming the file, not a silently wrong training set."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medunet.transforms import LabelToClassesd, LoadImageOrSeriesd


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def _affine(spacing: tuple[float, float, float] = (1.0, 1.0, 2.0), origin: tuple[float, ...] = (0, 0, 0)) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


@pytest.fixture
def image(tmp_path: Path) -> str:
    return _nifti(tmp_path / "image.nii.gz", np.random.default_rng(0).random((10, 12, 6), dtype=np.float32), _affine())


def _load(image: str, label: str) -> dict:
    return LoadImageOrSeriesd(["image", "label"], label_keys="label")({"image": image, "label": label})


def test_a_label_on_the_same_grid_pairs(tmp_path: Path, image: str) -> None:
    label = _nifti(tmp_path / "label.nii.gz", np.ones((10, 12, 6), np.uint8), _affine(origin=(0.0004, 0, 0)))
    assert _load(image, label)["label"].shape == (1, 10, 12, 6)


@pytest.mark.parametrize(
    ("shape", "affine", "message"),
    [
        ((10, 12, 5), _affine(), r"spatial shape \(10, 12, 5\) differs from \(10, 12, 6\)"),
        ((10, 12, 6), _affine(origin=(3.0, 0, 0)), r"affine .* differs .* shifted, mirrored or resampled"),
        ((10, 12, 6), np.diag([-1.0, 1.0, 2.0, 1.0]), r"affine .* differs .* check_geometry=False"),
        ((10, 12, 6), _affine(spacing=(1.0, 1.0, 2.5)), r"affine .* differs"),
    ],
    ids=["other shape", "shifted", "mirrored", "other spacing"],
)
def test_a_label_on_another_grid_is_refused(
    tmp_path: Path, image: str, shape: tuple[int, ...], affine: np.ndarray, message: str
) -> None:
    label = _nifti(tmp_path / "label.nii.gz", np.ones(shape, np.uint8), affine)
    with pytest.raises(ValueError, match=message) as info:
        _load(image, label)
    assert "label.nii.gz" in str(info.value)
    assert "image.nii.gz" in str(info.value)


def test_the_geometry_check_can_be_switched_off(tmp_path: Path, image: str) -> None:
    label = _nifti(tmp_path / "label.nii.gz", np.ones((10, 12, 6), np.uint8), _affine(origin=(3.0, 0, 0)))
    loader = LoadImageOrSeriesd(["image", "label"], label_keys="label", check_geometry=False)
    assert loader({"image": image, "label": label})["label"].shape == (1, 10, 12, 6)


def test_a_2d_label_of_another_size_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.zeros((20, 31), np.uint8)).save(tmp_path / "label.png")
    with pytest.raises(ValueError, match=r"label\.png: spatial shape \(31, 20\) differs from \(30, 20\)"):
        _load(str(tmp_path / "image.png"), str(tmp_path / "label.png"))


def test_a_01_mask_under_the_threshold_rule_is_refused(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 1
    Image.fromarray(mask).save(tmp_path / "mask.png")
    d = LoadImageOrSeriesd("label", label_keys="label")({"label": str(tmp_path / "mask.png")})
    with pytest.raises(
        ValueError, match=r"mask\.png: label values \[0, 1\] are all at or below the threshold 127.*'classes'"
    ):
        LabelToClassesd("label", rule="threshold")(d)
    assert int(LabelToClassesd("label", rule="classes")(d)["label"].sum()) == 25


def test_an_empty_label_under_the_threshold_rule_is_allowed() -> None:
    classes = LabelToClassesd("label", rule="threshold")({"label": np.zeros((1, 8, 8), np.uint8)})["label"]
    assert int(classes.sum()) == 0
