"""Regions of an image beyond its border: the index arithmetic of mirror extension, and region extraction.

Both the overlap-tile inferer (tiles of the whole image) and the training tile sampler (random tiles) cut
regions that may reach past the image border; they must extend the image the same way, so that training
tiles see the border extrapolation that inference sees (Ronneberger et al. 2015, Fig. 2). This module is
that one implementation, for NumPy arrays and torch tensors alike.

``numpy.pad`` / ``torch.nn.functional.pad`` are not used: reflection there refuses a margin larger than the
image (a 92-voxel margin on a 20-slice volume is ordinary here), and padding the whole image to cut one
tile would copy it for every tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from medunet.utils.enums import PaddingMode, look_up

if TYPE_CHECKING:
    import torch

__all__ = ["extension_indices", "extract_region", "read_region"]

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def extension_indices(
    positions: np.ndarray, size: int, mode: str | PaddingMode = PaddingMode.SYMMETRIC
) -> tuple[np.ndarray, np.ndarray | None]:
    """Maps positions along an axis of length ``size`` (any integers) into ``[0, size)``.

    ``symmetric`` repeats the mirror image with the edge voxel (period ``2 * size``), ``reflect`` without
    it (period ``2 * size - 2``); both repeat as often as needed, so a margin larger than the image is
    fine. ``edge`` clamps. ``constant`` clamps and also returns a mask that is False outside the image.

    Returns:
        The source index of every position, and for ``constant`` the inside mask (None otherwise).
    """
    kind = look_up(mode, PaddingMode, "padding_mode")
    if size < 1:
        raise ValueError(f"axis size must be >= 1, got {size}")
    if kind == PaddingMode.SYMMETRIC:
        j = np.mod(positions, 2 * size)
        return np.where(j >= size, 2 * size - 1 - j, j), None
    if kind == PaddingMode.REFLECT:
        if size == 1:
            return np.zeros_like(positions), None
        period = 2 * size - 2
        j = np.mod(positions, period)
        return np.where(j >= size, period - j, j), None
    clipped = np.clip(positions, 0, size - 1)
    if kind == PaddingMode.EDGE:
        return clipped, None
    return clipped, (positions >= 0) & (positions < size)


def extract_region(
    array: ArrayT, start: Sequence[int], size: Sequence[int], mode: str | PaddingMode = PaddingMode.SYMMETRIC
) -> ArrayT:
    """The spatial region ``[start, start + size)`` of a channel-first array ``(C, *S)``, extended beyond
    the border by ``mode`` (see :func:`extension_indices`).

    Axes where the region lies inside the image are sliced, so the result may be a view of the input (copy
    it before writing to it); only axes that reach past the border are gathered. A label array extended the same way stays consistent with its image (the mirrored image
    has the mirrored ground truth). Works on NumPy arrays and torch tensors (on their device); the input is
    never modified.

    Shapes:
        ``array``: ``(C, *S)``; returns ``(C, *size)`` of the same type, dtype and device.
    """
    spatial = tuple(int(s) for s in array.shape[1:])
    if len(start) != len(spatial) or len(size) != len(spatial):
        raise ValueError(
            f"start {tuple(start)} and size {tuple(size)} must have one entry per spatial axis of an array of "
            f"shape {tuple(array.shape)} (channel first)"
        )
    is_tensor = not isinstance(array, np.ndarray)  # a torch tensor (imported only then: medunet.runtime has none)
    out: Any = array  # the same type as ``array`` throughout; mypy cannot follow the branch on it
    mask = None
    for axis, (s, n, dim) in enumerate(zip(start, size, spatial)):
        s, n = int(s), int(n)
        if s >= 0 and s + n <= dim:
            index = (slice(None),) * (axis + 1) + (slice(s, s + n),)
            out = out[index]
            continue
        idx, inside = extension_indices(np.arange(s, s + n), dim, mode)
        if is_tensor:
            import torch

            out = out.index_select(axis + 1, torch.as_tensor(idx, device=array.device))
        else:
            out = np.take(out, idx, axis=axis + 1)
        if inside is not None:
            shape = [1] * (len(spatial) + 1)
            shape[axis + 1] = n
            axis_mask = inside.reshape(shape)
            mask = axis_mask if mask is None else mask & axis_mask
    if mask is not None:
        out = out * (out.new_tensor(mask) if is_tensor else mask)
    return out


def read_region(
    source: Any, start: Sequence[int], size: Sequence[int], mode: str | PaddingMode = PaddingMode.SYMMETRIC
) -> np.ndarray:
    """:func:`extract_region` of an array that need not be in memory: a zarr array, a memmap, a TIFF's zarr view.

    Only the bounding box of the voxels the region needs is read from ``source`` (one slicing, which zarr
    turns into reads of the chunks it touches); positions beyond the border are then gathered from that box
    in memory by the same index arithmetic (:func:`extension_indices`). The result equals
    ``extract_region(np.asarray(source), start, size, mode)``.

    Shapes:
        ``source``: ``(C, *S)``, anything with ``shape`` and NumPy basic slicing; returns ``(C, *size)`` as a
        NumPy array of the source's dtype.
    """
    spatial = tuple(int(s) for s in source.shape[1:])
    if len(start) != len(spatial) or len(size) != len(spatial):
        raise ValueError(
            f"start {tuple(start)} and size {tuple(size)} must have one entry per spatial axis of an array of "
            f"shape {tuple(source.shape)} (channel first)"
        )
    boxes, gathers, mask = [], [], None
    for axis, (s, n, dim) in enumerate(zip(start, size, spatial)):
        idx, inside = extension_indices(np.arange(int(s), int(s) + int(n)), dim, mode)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        boxes.append(slice(lo, hi))
        gathers.append(None if (hi - lo == n and idx[0] == lo and idx[-1] == hi - 1) else idx - lo)
        if inside is not None and not inside.all():
            shape = [1] * (len(spatial) + 1)
            shape[axis + 1] = int(n)
            mask = inside.reshape(shape) if mask is None else mask & inside.reshape(shape)
    out = np.asarray(source[(slice(None), *boxes)])
    for axis, gather in enumerate(gathers):
        if gather is not None:
            out = np.take(out, gather, axis=axis + 1)
    return out * mask if mask is not None else out
