"""The U-Net paper's elastic deformation (Ronneberger et al. 2015, section 3.1), in 2D and 3D.

"We generate smooth deformations using random displacement vectors on a coarse 3 by 3 grid. The
displacements are sampled from a Gaussian distribution with 10 pixels standard deviation. Per-pixel
displacements are then computed using bicubic interpolation."

MONAI's ``Rand2DElastic`` builds a comparable field in 2D, but its ``Rand3DElastic`` smooths a dense random
field instead of interpolating a coarse grid, so the paper's deformation is written here once for any
number of dimensions with SciPy's cubic splines. The random part (:func:`sample_grid_displacements`) is
separate from the deterministic warp, so every deformation is reproducible and testable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["dense_displacement_field", "elastic_deform", "sample_grid_displacements"]


def sample_grid_displacements(
    rng: np.random.Generator | np.random.RandomState,
    spatial_dims: int,
    points: int | Sequence[int] = 3,
    sigma: float | Sequence[float] = 10.0,
) -> np.ndarray:
    """Random displacements on the coarse control grid: ``(spatial_dims, *points)``, N(0, sigma) per axis (px)."""
    grid = (points,) * spatial_dims if isinstance(points, int) else tuple(points)
    if len(grid) != spatial_dims or min(grid) < 2:
        raise ValueError(f"points must be >= 2 per axis for {spatial_dims} axes, got {points}")
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (spatial_dims,))
    return rng.normal(0.0, 1.0, size=(spatial_dims, *grid)) * sig.reshape(-1, *([1] * spatial_dims))


def dense_displacement_field(grid: np.ndarray, spatial_shape: Sequence[int]) -> np.ndarray:
    """Cubic-spline interpolation of control-grid displacements ``(dims, *points)`` to ``(dims, *spatial_shape)``.

    The control points sit at the image corners and evenly in between (the grid spans the image).
    """
    dims = grid.shape[0]
    if len(spatial_shape) != dims:
        raise ValueError(
            f"grid has {dims} components, spatial_shape {tuple(spatial_shape)} has {len(spatial_shape)} axes"
        )
    axes = [np.linspace(0.0, n - 1.0, s) for n, s in zip(grid.shape[1:], spatial_shape)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))
    return np.stack([ndimage.map_coordinates(grid[d], coords, order=3, mode="nearest") for d in range(dims)])


def elastic_deform(array: np.ndarray, field: np.ndarray, order: int = 3, mode: str = "mirror") -> np.ndarray:
    """Warps a channel-first ``(C, *S)`` array: output(x) = input(x + field(x)).

    Args:
        array: image (use ``order=3``) or labels (``order=0``: nearest neighbour, no new label values).
        field: ``(dims, *S)`` displacement in voxels.
        order: spline order of the interpolation.
        mode: how values beyond the border are taken (SciPy's modes; ``"mirror"`` matches the paper's
            mirroring).
    """
    spatial = array.shape[1:]
    if field.shape != (len(spatial), *spatial):
        raise ValueError(f"field shape {field.shape} does not match the array's spatial shape {spatial}")
    coords = np.indices(spatial, dtype=np.float64) + field
    out = np.empty(array.shape, dtype=np.float32 if order > 0 else array.dtype)
    for c in range(array.shape[0]):
        channel = array[c].astype(np.float64) if order > 0 else array[c]
        out[c] = ndimage.map_coordinates(channel, coords, order=order, mode=mode)
    return out
