"""Checks at the edge: what a file's header declares before it is read, and what was read before it is used.

A header is checked against the file's size before any pixel is decoded: a 4 KiB NIfTI or PNG can declare
gigabytes, and the readers allocate what the header declares. Uncompressed data must fit in the file;
DEFLATE (gzip, PNG) cannot compress better than about 1032:1, so a compressed file that declares more than
that is corrupt or hostile. A configurable maximum bounds what any file may declare. After reading, an image
must be non-empty, finite and placed by an invertible affine with positive spacing.

nibabel and Pillow open headers lazily but neither compares the declared size with the file, so that
comparison is done here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFLATE_MAX_RATIO",
    "MAX_IMAGE_BYTES_ENV",
    "check_declared_size",
    "check_image",
    "max_image_bytes",
    "read_error",
]

DEFLATE_MAX_RATIO = 1032
"""The largest compression ratio DEFLATE can reach (258-byte matches coded in under 2 bits)."""

MAX_IMAGE_BYTES_ENV = "MEDUNET_MAX_IMAGE_BYTES"
_DEFAULT_MAX_IMAGE_BYTES = 16 * 2**30


def max_image_bytes() -> int:
    """The most bytes an image may declare: ``$MEDUNET_MAX_IMAGE_BYTES`` or 16 GiB."""
    text = os.environ.get(MAX_IMAGE_BYTES_ENV)
    if text is None:
        return _DEFAULT_MAX_IMAGE_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_IMAGE_BYTES_ENV}={text!r} must be a positive number of bytes, e.g. 34359738368")
    return value


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**26 else f"{int(n)} bytes"


def read_error(path: Path, kind: str, err: BaseException) -> ValueError:
    """The error for a file its reader could not decode: names the file, the reader's reason and the fix."""
    return ValueError(
        f"{path}: cannot be read as {kind} ({type(err).__name__}: {err}); the file is truncated or corrupt. "
        "Export or copy it again from its source."
    )


def _nifti_declared(path: Path) -> tuple[tuple[int, ...], int, int | None]:
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))  # reads the header only
        shape = tuple(int(s) for s in img.header.get_data_shape())
        itemsize = int(img.header.get_data_dtype().itemsize)
        offset = int(img.header.get("vox_offset", 0)) if hasattr(img.header, "get") else 0
    except Exception as err:
        raise read_error(path, "NIfTI", err) from None
    size = path.stat().st_size
    bound = size * DEFLATE_MAX_RATIO if path.name.lower().endswith(".gz") else size - offset
    return shape, int(np.prod(shape, dtype=np.int64)) * itemsize, bound


_BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4, "1": 1}


def _pil_declared(path: Path) -> tuple[tuple[int, ...], int, int | None]:
    from PIL import Image

    # Pillow's own bomb check (DecompressionBombError) would fire inside open() with a message that names no
    # file; the size is checked here instead, so it is switched off for the header read.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            width, height = im.size
            bands = len(im.getbands())
            per_band = _BYTES_PER_BAND.get(im.mode, 1)
            pages = int(getattr(im, "n_frames", 1))
            fmt = im.format
    except Exception as err:
        raise read_error(path, "an image", err) from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if pages > 1:
        raise ValueError(
            f"{path}: a multi-page image ({pages} pages); only its first page would be read. Pass stack=True to "
            "load_image or LoadImageOrSeriesd (inference bundles: --preprocessing#transforms#0#stack True) to load "
            "the pages as a 3D volume (x, y, page), or save the z-stack as NIfTI."
        )
    bound = path.stat().st_size * DEFLATE_MAX_RATIO if fmt == "PNG" else None
    return (width, height, bands), width * height * bands * per_band, bound


def check_declared_size(path: Path, kind: str, max_bytes: int | None = None) -> None:
    """Refuses ``path`` (a NIfTI file or a 2D image, by ``kind``: ``"nifti"`` / ``"image"``) when its header
    declares an empty array, more than the file can hold, or more than ``max_bytes`` (default
    :func:`max_image_bytes`); reads no pixel data.

    Raises:
        ValueError: naming the file, the declared and available sizes, and the fix.
    """
    shape, declared, bound = (_nifti_declared if kind == "nifti" else _pil_declared)(path)
    if 0 in shape:
        raise ValueError(f"{path}: the header declares an empty image (shape {shape}); the file holds no voxels")
    if bound is not None and declared > bound:
        raise ValueError(
            f"{path}: the header declares {_gib(declared)} of voxels (shape {shape}) but the file of "
            f"{path.stat().st_size} bytes cannot hold them; it is truncated or corrupt. Export it again."
        )
    limit = max_image_bytes() if max_bytes is None else max_bytes
    if declared > limit:
        raise ValueError(
            f"{path}: the header declares {_gib(declared)} of voxels (shape {shape}), more than the limit of "
            f"{_gib(limit)}; raise it with ${MAX_IMAGE_BYTES_ENV} (bytes) if the image is genuine."
        )


def check_image(array: Any, affine: Any, path: Path, allow_nan: bool = False) -> None:
    """Refuses an image that was read but cannot be segmented meaningfully.

    Checks: no zero-length axis; no NaN or infinite voxel (unless ``allow_nan``); the affine (when given)
    finite and invertible with positive spacing.

    Raises:
        ValueError: naming the file, the problem and the fix.
    """
    shape = tuple(array.shape)
    if 0 in shape or not shape:
        raise ValueError(f"{path}: empty image (shape {shape}); there is nothing to segment")
    values = np.asarray(array) if not hasattr(array, "numpy") else array.detach().cpu().numpy()
    if values.dtype.kind in "fc" and not allow_nan:
        finite = np.isfinite(values)
        if not finite.all():
            nan = int(np.isnan(values).sum())
            inf = int(values.size - finite.sum()) - nan
            raise ValueError(
                f"{path}: {nan} NaN and {inf} infinite voxels; every later step (intensity scaling, the network) "
                "would turn them into wrong values. Clean the image, or pass allow_nan=True to load it as is."
            )
    if affine is None:
        return
    matrix = np.asarray(affine.detach().cpu() if hasattr(affine, "detach") else affine, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ValueError(
            f"{path}: the image's position or orientation is not finite (affine {matrix.tolist()}); a NaN slice "
            "position or direction in the header. Fix the header (e.g. ImagePositionPatient of every slice)."
        )
    linear = matrix[:-1, :-1]
    spacing = np.linalg.norm(linear, axis=0)
    if (spacing <= 0).any() or abs(float(np.linalg.det(linear))) < 1e-12 * float(np.prod(spacing) or 1.0):
        raise ValueError(
            f"{path}: the header's voxel spacing {np.round(spacing, 6).tolist()} / orientation is singular (affine "
            f"{np.round(matrix, 6).tolist()}); voxels would have no size or collapse onto each other. Fix the "
            "header's pixel spacing (pixdim, PixelSpacing, slice positions)."
        )
