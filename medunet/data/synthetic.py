"""Generated images with touching objects and instance labels: medunet's embedded default data.

Nothing is downloaded: the bundles' default data and the tests are made here from a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["ellipsoid_labels", "synthetic_cells"]


def synthetic_cells(
    shape: Sequence[int] = (256, 256),
    n_objects: int | None = None,
    radius: tuple[float, float] = (7.0, 14.0),
    noise: float = 0.08,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cells (2D) or blobs (3D) packed so that many touch, like nuclei in fluorescence microscopy.

    Objects are random ellipses/ellipsoids; where two overlap, the later one wins, so neighbours share a
    border. Each object's border is drawn darker, as the membranes between touching cells in the
    U-Net paper's images, so that a network can learn to separate them.

    Args:
        shape: spatial shape, 2 or 3 axes (px).
        n_objects: number of objects; by default about 45 % of the area is covered.
        radius: range of the semi-axes (px).
        noise: standard deviation of the additive Gaussian noise (image range about 0..1).
        seed: random seed (the output is a pure function of the arguments).

    Returns:
        ``image`` (float32, shape ``shape``, about 0..1) and ``instances`` (int32, 0 = background, 1..N).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must have 2 or 3 positive sizes, got {shape}")
    rng = np.random.default_rng(seed)
    dims = len(shape)
    mean_r = float(np.mean(radius))
    if n_objects is None:
        unit = np.pi * mean_r**2 if dims == 2 else 4 / 3 * np.pi * mean_r**3
        n_objects = max(1, int(0.45 * np.prod(shape) / unit * 1.3))
    instances = np.zeros(shape, dtype=np.int32)
    grid = np.indices(shape, dtype=np.float32)
    for label in range(1, n_objects + 1):
        centre = np.array([rng.uniform(0, s) for s in shape], dtype=np.float32)
        semi = rng.uniform(radius[0], radius[1], size=dims).astype(np.float32)
        lo = np.maximum(np.floor(centre - semi.max()).astype(int), 0)
        hi = np.minimum(np.ceil(centre + semi.max()).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        # A random rotation in the first two axes gives ellipses of every orientation.
        theta = rng.uniform(0, np.pi)
        d = [grid[i][box] - centre[i] for i in range(dims)]
        u = np.cos(theta) * d[0] + np.sin(theta) * d[1]
        v = -np.sin(theta) * d[0] + np.cos(theta) * d[1]
        r2 = (u / semi[0]) ** 2 + (v / semi[1]) ** 2
        if dims == 3:
            r2 = r2 + (d[2] / semi[2]) ** 2
        instances[box][r2 <= 1.0] = label
    # Keep labels consecutive (some objects are fully covered by later ones).
    present = np.unique(instances)
    present = present[present > 0]
    remap = np.zeros(n_objects + 1, dtype=np.int32)
    remap[present] = np.arange(1, present.size + 1, dtype=np.int32)
    instances = remap[instances]

    footprint = ndimage.generate_binary_structure(dims, 1)
    border = (ndimage.grey_dilation(instances, footprint=footprint) != instances) | (
        ndimage.grey_erosion(instances, footprint=footprint) != instances
    )
    brightness = rng.uniform(0.55, 0.9, size=present.size + 1).astype(np.float32)
    brightness[0] = 0.15
    image = brightness[instances]
    image[border & (instances > 0)] = 0.3
    image = ndimage.gaussian_filter(image, sigma=1.0)
    image = image + rng.normal(0.0, noise, size=shape).astype(np.float32)
    return image.astype(np.float32), instances


def ellipsoid_labels(shape: tuple[int, int, int]) -> np.ndarray:
    """Two smooth objects filling an ``(x, y, z)`` volume of any size: an ellipsoid lesion (label 1, half axes a
    quarter, a fifth and three tenths of the volume) and an elliptic rod through every slice (label 2, half axes 12
    and 9 voxels), for tests and benchmarks of contours and surfaces."""
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint8)
    labels[((x - 0.45 * shape[0]) / (0.25 * shape[0])) ** 2 + ((y - 0.5 * shape[1]) / (0.2 * shape[1])) ** 2
           + ((z - 0.5 * shape[2]) / (0.3 * shape[2])) ** 2 < 1] = 1  # fmt: skip
    labels[((x - 0.8 * shape[0]) / 12) ** 2 + ((y - 0.2 * shape[1]) / 9) ** 2 < 1] = 2
    return labels
