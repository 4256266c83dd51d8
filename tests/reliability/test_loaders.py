"""Malformed and hostile image files: each gives a clear error naming the file (or is handled as documented),
nothing is allocated before the header is checked against the file, and no input file changes."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medunet.io import load_image


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and header declaring ``width x height`` 16-bit grey pixels, with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )
    return path


def _nifti_claiming(path: Path, shape: tuple[int, ...]) -> Path:
    """A NIfTI header declaring ``shape`` float32 voxels, followed by 4 KiB of data (gzip-compressed for .gz)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4 + b"\x00" * 4096
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


# ---- cases: (id, make the file in a folder, load_image kwargs, expected error pattern) ----------------------


def _inf(folder: Path) -> Path:
    a = np.ones((6, 7, 5), np.float32)
    a[0, 0, 0], a[1, 2, 3] = np.inf, -np.inf
    return _nifti(folder / "inf.nii.gz", a)


def _empty(folder: Path) -> Path:
    return _nifti(folder / "empty.nii.gz", np.zeros((6, 0, 5), np.float32))


def _zero_spacing(folder: Path) -> Path:
    img = nib.Nifti1Image(np.ones((6, 7, 5), np.float32), None)  # a singular affine cannot become a qform
    img.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)
    img.set_qform(None, code=0)
    nib.save(img, str(folder / "zero_spacing.nii.gz"))
    return folder / "zero_spacing.nii.gz"


def _nan_position(folder: Path) -> Path:
    affine = np.eye(4)
    affine[2, 3] = np.nan
    return _nifti(folder / "nan_position.nii.gz", np.ones((6, 7, 5), np.float32), affine)


def _four_d(folder: Path) -> Path:
    return _nifti(folder / "four_d.nii.gz", np.random.default_rng(0).random((6, 7, 5, 3), dtype=np.float32))


def _five_d(folder: Path) -> Path:
    return _nifti(folder / "five_d.nii.gz", np.ones((6, 7, 5, 1, 2), np.float32))


def _truncated_nifti(folder: Path) -> Path:
    path = _nifti(folder / "truncated.nii.gz", np.random.default_rng(0).random((30, 30, 30), dtype=np.float32))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _truncated_plain_nifti(folder: Path) -> Path:
    path = _nifti(folder / "truncated.nii", np.random.default_rng(0).random((30, 30, 30), dtype=np.float32))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _garbage_nifti(folder: Path) -> Path:
    path = folder / "garbage.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    return path


def _garbage_png(folder: Path) -> Path:
    path = folder / "garbage.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(500))
    return path


def _truncated_png(folder: Path) -> Path:
    path = folder / "truncated.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    return path


def _multipage(folder: Path) -> Path:
    pages = [Image.fromarray(np.full((5, 4), i * 10, np.uint8)) for i in range(3)]
    pages[0].save(folder / "stack.tif", save_all=True, append_images=pages[1:])
    return folder / "stack.tif"


def _bomb_png(folder: Path) -> Path:
    return _png_claiming(folder / "bomb.png", 200_000, 100_000)


def _bomb_nifti(folder: Path) -> Path:
    return _nifti_claiming(folder / "bomb.nii.gz", (2048, 2048, 2048))


def _bomb_plain_nifti(folder: Path) -> Path:
    return _nifti_claiming(folder / "bomb.nii", (2048, 2048, 2048))


def _unsupported(folder: Path) -> Path:
    path = folder / "image.mha"
    path.write_bytes(b"ObjectType = Image\n")
    return path


CASES: list[tuple[str, Callable[[Path], Path], dict, str]] = [
    ("inf voxels", _inf, {}, r"0 NaN and 2 infinite voxels.*allow_nan=True"),
    ("empty image", _empty, {}, r"declares an empty image \(shape \(6, 0, 5\)\)"),
    ("zero spacing", _zero_spacing, {}, r"voxel spacing \[1\.0, 1\.0, 0\.0\].*singular.*Fix the header"),
    ("nan slice position", _nan_position, {}, r"position or orientation is not finite.*Fix the header"),
    ("4D without frame", _four_d, {}, r"4D NIfTI with 3 time points.*frame=K \(0\.\.2\)"),
    ("4D frame out of range", _four_d, {"frame": 5}, r"frame=5 is out of range"),
    ("5D", _five_d, {}, r"a 5D NIfTI.*Split it"),
    ("truncated nii.gz", _truncated_nifti, {}, r"cannot be read as NIfTI.*truncated or corrupt"),
    ("truncated nii", _truncated_plain_nifti, {}, r"cannot hold them.*truncated or corrupt"),
    ("garbage nii.gz", _garbage_nifti, {}, r"cannot be read as NIfTI.*truncated or corrupt"),
    ("garbage png", _garbage_png, {}, r"cannot be read as an image.*truncated or corrupt"),
    ("truncated png", _truncated_png, {}, r"cannot be read as an image.*truncated or corrupt"),
    ("multi-page tiff", _multipage, {}, r"multi-page image \(3 pages\).*stack=True"),
    ("png header claiming 37 GiB", _bomb_png, {}, r"declares 37\.3 GiB.*cannot hold them"),
    ("nii.gz header claiming 32 GiB", _bomb_nifti, {}, r"declares 32 GiB.*cannot hold them"),
    ("nii header claiming 32 GiB", _bomb_plain_nifti, {}, r"declares 32 GiB.*cannot hold them"),
    ("unsupported type", _unsupported, {}, r"unsupported file type"),
]


@pytest.mark.parametrize(("make", "kwargs", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_image_files_give_a_clear_error_naming_the_file(
    tmp_path: Path, make: Callable[[Path], Path], kwargs: dict, pattern: str
) -> None:
    path = make(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=pattern) as info:
        load_image(path, **kwargs)
    assert str(path) in str(info.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was modified"


def test_4d_nifti_loads_the_chosen_frame(tmp_path: Path) -> None:
    path = _four_d(tmp_path)
    data = np.asarray(nib.load(str(path)).dataobj)
    image = load_image(path, frame=2)
    assert image.shape == (1, 6, 7, 5)
    np.testing.assert_array_equal(image[0].numpy(), data[..., 2])


def test_4d_nifti_with_one_time_point_loads_as_a_volume(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "t1.nii.gz", np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5, 1))
    assert load_image(path).shape == (1, 6, 7, 5)


def test_multipage_tiff_loads_as_a_volume_with_stack(tmp_path: Path) -> None:
    image = load_image(_multipage(tmp_path), stack=True)
    assert image.shape == (1, 4, 5, 3)  # (x = width, y = height, page)
    assert [float(image[0, :, :, i].mean()) for i in range(3)] == [0.0, 10.0, 20.0]


def test_nan_voxels_load_with_allow_nan(tmp_path: Path) -> None:
    image = load_image(_inf(tmp_path), allow_nan=True)
    assert int(np.isinf(image.numpy()).sum()) == 2


def test_configured_maximum_refuses_large_declared_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _nifti(tmp_path / "ok.nii.gz", np.ones((20, 20, 20), np.float32))
    assert load_image(path).shape == (1, 20, 20, 20)
    with pytest.raises(ValueError, match=r"more than the limit of 1000 bytes.*MEDUNET_MAX_IMAGE_BYTES"):
        load_image(path, max_bytes=1000)
    monkeypatch.setenv("MEDUNET_MAX_IMAGE_BYTES", "1000")
    with pytest.raises(ValueError, match="more than the limit"):
        load_image(path)
    monkeypatch.setenv("MEDUNET_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ValueError, match="MEDUNET_MAX_IMAGE_BYTES='lots' must be a positive number"):
        load_image(path)


_PEAK = """
import json, resource, sys
from medunet.io import load_image
try:
    load_image(sys.argv[1])
    outcome = "loaded"
except ValueError as err:
    outcome = str(err)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "outcome": outcome}))
"""


_IMPORT_ONLY = "import resource, medunet.io; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


@pytest.fixture(scope="module")
def import_only_peak_kib() -> int:
    """Peak memory of a fresh process that only imports medunet (measured once for the cases below)."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_ONLY], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("make", [_bomb_nifti, _bomb_plain_nifti, _bomb_png], ids=["nii.gz", "nii", "png"])
def test_a_header_claiming_gigabytes_is_refused_before_allocating(
    tmp_path: Path, make: Callable[[Path], Path], import_only_peak_kib: int
) -> None:
    """Peak memory of a fresh process that loads the file, beyond that of one that only imports medunet."""
    path = make(tmp_path)
    assert path.stat().st_size < 8 * 1024
    result = json.loads(subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])  # fmt: skip
    assert "cannot hold them" in result["outcome"], result
    extra = (result["peak_kib"] - import_only_peak_kib) * 1024
    assert extra < 256 * 2**20, f"loading took {extra / 2**20:.0f} MiB beyond importing medunet"
