"""The U-Net paper's pixel-wise loss weight map (Ronneberger et al. 2015, section 3, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

``d1`` and ``d2`` are the distances to the border of the nearest and the second-nearest object,
``w_c`` balances the class frequencies. The border term makes the network learn the thin background
gaps that separate touching objects.

Written by hand: neither MONAI nor scikit-image provides it. Computing one full-image distance
transform per object costs O(objects x pixels); here each object's distance transform is restricted to
its bounding box grown by the radius beyond which the border term falls under ``tolerance * w0``, so the
work per object is bounded by the object's size plus that radius.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["border_term_radius", "class_balance_weights", "separate_touching", "unet_weight_map"]


def border_term_radius(sigma: float, tolerance: float) -> float:
    """Distance beyond which ``exp(-d^2 / (2 sigma^2)) < tolerance`` (same unit as ``sigma``)."""
    return float(sigma * np.sqrt(2.0 * np.log(1.0 / tolerance)))


def separate_touching(instances: np.ndarray) -> np.ndarray:
    """Instance labels with a one-voxel background border carved between touching objects.

    The paper's ground truth separates touching cells by a background border; instance masks that abut
    (as in DSB 2018) do not. Every object voxel that touches (in the full 8/26-neighbourhood) an object
    with a smaller label becomes background, so touching objects end up separated by one voxel. The
    input is not modified.
    """
    labels = np.asarray(instances).astype(np.int64)
    footprint = np.ones((3,) * labels.ndim, dtype=bool)
    big = int(labels.max()) + 1  # stands for background (an int64 maximum overflows inside SciPy)
    smallest_neighbour = ndimage.grey_erosion(np.where(labels > 0, labels, big), footprint=footprint)
    out = labels.copy()
    out[(labels > 0) & (smallest_neighbour < labels)] = 0
    return out


def class_balance_weights(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``w_c``: per-voxel weight ``N / (K * N_c)`` for class ``c`` (mean 1 over the image; K present classes)."""
    classes = labels.astype(np.int64)
    counts = np.bincount(classes.ravel(), minlength=num_classes or 0).astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = classes.size / (present.sum() * counts[present])
    return weights[classes].astype(np.float32)


def _check_instances(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim not in (2, 3):
        raise ValueError(f"labels must be a 2D or 3D label array, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError("labels must hold integer label values (found non-integer or NaN values)")
        array = array.astype(np.int64)
    elif array.dtype.kind == "b":
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = background), found {array.min()}")
    return array


def unet_weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    spacing: Sequence[float] | None = None,
    binary: bool = False,
    separate: bool = True,
    class_weights: str | Sequence[float] | None = "balanced",
    tolerance: float = 1e-6,
) -> np.ndarray:
    """The paper's weight map for a 2D or 3D instance-label (or binary) array.

    Args:
        labels: ``(H, W)`` or ``(D, H, W)`` (any axis order), 0 = background, 1..N = objects. With
            ``binary=True`` any non-zero value is foreground and objects are its connected components.
        w0: weight of the border term (10 in the paper).
        sigma: width of the border term (5 px in the paper); in the unit of ``spacing`` when given (mm).
        spacing: voxel size per axis; distances are physical when given, in voxels otherwise.
        binary: treat ``labels`` as a binary mask and split it into connected components.
        separate: carve a one-voxel background border between touching objects first
            (:func:`separate_touching`), as in the paper's ground truth; the border term then peaks there.
        class_weights: ``"balanced"`` (inverse class frequency of background/foreground, mean 1), ``None``
            (w_c = 1) or two weights (background, foreground).
        tolerance: border-term values below ``tolerance * w0`` are dropped (bounds the work per object).

    Returns:
        float32 array of the same shape; the border term is added on background voxels only (the gaps
        between objects, where the paper's Fig. 3d is bright).
    """
    instances = _check_instances(labels)
    if w0 < 0 or sigma <= 0:
        raise ValueError(f"w0 must be >= 0 and sigma > 0, got w0={w0}, sigma={sigma}")
    sampling = np.ones(instances.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if sampling.shape != (instances.ndim,) or np.any(sampling <= 0):
        raise ValueError(f"spacing must have {instances.ndim} positive values, got {spacing}")
    if binary:
        instances, _ = ndimage.label(instances > 0)
    if separate:
        instances = separate_touching(instances)
    foreground = instances > 0

    if class_weights is None:
        weights = np.ones(instances.shape, np.float32)
    elif isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights={class_weights!r} is not supported; use 'balanced', None or two numbers")
        weights = class_balance_weights(foreground.astype(np.int64), 2)
    else:
        cw = np.asarray(class_weights, dtype=np.float32)
        if cw.shape != (2,):
            raise ValueError(f"class_weights must be (background, foreground), got {class_weights}")
        weights = cw[foreground.astype(np.int64)]

    if w0 == 0:
        return weights
    d1, d2 = _two_nearest_distances(instances, sampling, border_term_radius(sigma, tolerance))
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    border[foreground] = 0.0
    return (weights + border).astype(np.float32)


def _two_nearest_distances(instances: np.ndarray, sampling: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel, the distances to the nearest and second-nearest object (inf beyond ``radius``)."""
    d1 = np.full(instances.shape, np.inf, dtype=np.float64)
    d2 = np.full(instances.shape, np.inf, dtype=np.float64)
    grow = np.ceil(radius / sampling).astype(int)
    for label, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        region = tuple(slice(max(s.start - g, 0), min(s.stop + g, n)) for s, g, n in zip(box, grow, instances.shape))
        outside = instances[region] != label
        dist = ndimage.distance_transform_edt(outside, sampling=sampling)
        near = dist <= radius
        sub1, sub2 = d1[region], d2[region]
        # keep the two smallest of (d1, d2, dist) where this object is close enough to matter
        closer = near & (dist < sub1)
        second = near & ~closer & (dist < sub2)
        sub2[closer] = sub1[closer]
        sub1[closer] = dist[closer]
        sub2[second] = dist[second]
    return d1, d2
