"""load_image on NIfTI and 2D images (real data where present, generated files otherwise)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medunet.io import load_image
from tests.conftest import require


def test_nifti_keeps_affine(shared_data: Path) -> None:
    path = require(shared_data / "msd_spleen_ct_crop" / "images" / "spleen2_ct.nii.gz")
    image = load_image(path)
    reference = nib.load(path)
    assert image.shape == (1, 164, 166, 26)
    np.testing.assert_allclose(np.asarray(image.affine), reference.affine, atol=1e-5)
    np.testing.assert_allclose(np.asarray(image[0]), reference.get_fdata(), atol=1e-3)
    resampled = load_image(path, spacing=(1.59, 1.59, 5.0))
    assert resampled.shape[1:3] == (82, 83)
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(resampled.affine)[:3, :3], axis=0), (1.59, 1.59, 5.0), atol=1e-4
    )
    assert load_image(path, axcodes="LPS").shape == (1, 164, 166, 26)


def test_png_rgba_becomes_channels_and_labels_keep_values(shared_data: Path) -> None:
    image_path = require(shared_data / "dsb2018_nuclei" / "images" / "04acab7636c4.png")
    label_path = shared_data / "dsb2018_nuclei" / "labels" / "04acab7636c4.png"
    image = load_image(image_path)
    array = np.asarray(Image.open(image_path))
    assert image.shape == (4, array.shape[1], array.shape[0])  # MONAI's 2D convention: (C, W, H)
    labels = load_image(label_path, dtype=None)
    np.testing.assert_array_equal(np.asarray(labels[0]).T, np.asarray(Image.open(label_path)))


def test_nan_voxels_are_an_error(tmp_path: Path) -> None:
    data = np.zeros((8, 9, 5), np.float32)
    data[2, 3, 1] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(ValueError, match=r"nan.nii.gz: 1 NaN and 0 infinite voxels"):
        load_image(path)
    assert bool(load_image(path, allow_nan=True).isnan().any())


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    odd = tmp_path / "volume.mha"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_image(odd)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.nii.gz")


def test_tiff_instance_labels(shared_data: Path) -> None:
    path = require(shared_data / "stardist_dsb2018_sample" / "labels" / "mask2d.tif")
    labels = load_image(path, dtype=None)
    assert labels.shape == (1, 512, 512)
    assert len(np.unique(np.asarray(labels))) == 126  # 125 nuclei and the background
