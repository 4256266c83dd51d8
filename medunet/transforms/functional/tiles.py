"""Cutting training tiles for a valid-convolution network: input tiles and their output-region crops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medunet.inference.overlap_tile import extension_indices
from medunet.utils.enums import PaddingMode

__all__ = ["extract_region"]


def extract_region(
    array: np.ndarray, start: Sequence[int], size: Sequence[int], mode: PaddingMode = PaddingMode.SYMMETRIC
) -> np.ndarray:
    """The spatial region ``[start, start + size)`` of a channel-first array, extended beyond the borders.

    Positions outside the image are mirrored (by default) as in the overlap-tile inference, so training
    tiles see the same border extrapolation as inference. A label array extended the same way stays
    consistent with its image (the mirrored image has the mirrored ground truth).
    """
    out = array
    mask = None
    for axis, (s, n, dim) in enumerate(zip(start, size, array.shape[1:])):
        idx, inside = extension_indices(np.arange(s, s + n), dim, mode)
        out = np.take(out, idx, axis=axis + 1)
        if inside is not None:
            shape = [1] * array.ndim
            shape[axis + 1] = n
            m = inside.reshape(shape)
            mask = m if mask is None else mask & m
    if mask is not None:
        out = out * mask
    return out
