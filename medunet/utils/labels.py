"""Label-image primitives shared by the post-processing (transforms) and the metrics: connected components
with one connectivity convention, and removal of small objects."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential

__all__ = ["label_components", "remove_small"]


def label_components(mask: np.ndarray) -> np.ndarray:
    """Connected components (face connectivity: 4 in 2D, 6 in 3D) of a boolean mask, int32 labels 1..N."""
    array = np.asarray(mask).astype(bool)
    structure = ndimage.generate_binary_structure(array.ndim, 1)
    labels, _ = ndimage.label(array, structure=structure)
    return labels.astype(np.int32)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Objects of fewer than ``min_size`` voxels become background; labels renumbered 1..N (int32)."""
    out = np.asarray(labels).astype(np.int32)
    if min_size > 1 and out.max(initial=0) > 0:
        sizes = np.bincount(out.ravel())
        small = sizes < min_size
        small[0] = False
        out[small[out]] = 0
    return relabel_sequential(out)[0].astype(np.int32)
