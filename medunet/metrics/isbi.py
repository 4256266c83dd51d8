"""The ISBI 2012 challenge's own scores (Arganda-Carreras et al., Front. Neuroanat. 2015).

The organisers' evaluation thresholds the proposal (a probability of "cell", i.e. not membrane) at 0.0,
0.1, ..., 0.9 and keeps, per score, its best value over the thresholds. At one threshold:

1. Ground truth segments: the connected components (4-connectivity) of the ground truth's cell pixels.
   Proposal segments: the connected components of the proposal's pixels above the threshold.
2. Border thinning: the proposal's border pixels (not above the threshold) are given to the neighbouring
   segments by growing every segment one pixel at a time (the largest neighbouring label wins, as a 3x3
   maximum filter) until no border pixel remains inside the ground truth's cells.
3. Foreground restriction: only pixels inside the ground truth's cells count. ``p_ij`` is the fraction of
   them in proposal segment ``i`` and true segment ``j``; ``s_i`` and ``t_j`` its row and column sums.
4. ``V_Rand = sum p_ij^2 / (0.5 sum s_i^2 + 0.5 sum t_j^2)`` (the Rand F-score, eq. 3 with alpha = 0.5),
   ``V_Info = I(S; T) / (0.5 H(S) + 0.5 H(T))`` (eq. 6 with alpha = 0.5). Both are 1 for a perfect
   segmentation; the challenge ranks by them (higher is better).

Pixel error: ``1 - max over thresholds of the pixel F-score`` of the cell class (precision and recall of
the proposal's cell pixels against the ground truth's).

Written here because no library in medunet's stack computes the thinned, foreground-restricted scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medunet.utils.labels import label_components

__all__ = ["ISBI_THRESHOLDS", "isbi_scores", "thin_borders", "vrand_vinfo"]

ISBI_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))


def thin_borders(segments: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grows the labelled segments into their unlabelled (0) border until no 0 is left inside ``mask``."""
    out = np.asarray(segments).astype(np.int64).copy()
    if out.max(initial=0) == 0:  # no segment at all: the whole image is one segment
        return np.ones_like(out)
    while np.any((out == 0) & mask):
        zeros = out == 0
        out[zeros] = ndimage.maximum_filter(out, size=3)[zeros]
    return out


def vrand_vinfo(proposal_segments: np.ndarray, truth_segments: np.ndarray) -> tuple[float, float]:
    """``(V_Rand, V_Info)`` of two label images after thinning the proposal's borders, restricted to the
    truth's foreground (label > 0)."""
    mask = np.asarray(truth_segments) > 0
    if not mask.any():
        raise ValueError("the ground truth has no foreground (cell) pixels; V_Rand and V_Info are undefined")
    s = thin_borders(proposal_segments, mask)[mask]
    t = np.asarray(truth_segments)[mask].astype(np.int64)
    _, s = np.unique(s, return_inverse=True)
    _, t = np.unique(t, return_inverse=True)
    n_t = int(t.max()) + 1
    joint = np.bincount(s * n_t + t).astype(np.float64)
    joint = joint[joint > 0] / mask.sum()
    ps = np.bincount(s).astype(np.float64) / mask.sum()
    pt = np.bincount(t).astype(np.float64) / mask.sum()
    ps, pt = ps[ps > 0], pt[pt > 0]
    vrand = float(np.sum(joint**2) / (0.5 * np.sum(ps**2) + 0.5 * np.sum(pt**2)))
    h_joint = -np.sum(joint * np.log(joint))
    h_s, h_t = -np.sum(ps * np.log(ps)), -np.sum(pt * np.log(pt))
    denominator = 0.5 * h_s + 0.5 * h_t
    vinfo = float((h_s + h_t - h_joint) / denominator) if denominator > 0 else 1.0
    return vrand, vinfo


def isbi_scores(
    probability: np.ndarray, truth_cells: np.ndarray, thresholds: Sequence[float] = ISBI_THRESHOLDS
) -> dict[str, float]:
    """The challenge's scores of one 2D image.

    Args:
        probability: cell probability (or a binary cell mask), float in [0, 1], shape ``(H, W)``.
        truth_cells: the ground truth's cell mask (True/non-zero = cell, 0 = membrane), same shape.
        thresholds: where the proposal is cut (the organisers use 0.0, 0.1, ..., 0.9).

    Returns:
        ``vrand_thinned``, ``vinfo_thinned``, ``pixel_error`` (1 - maximal F-score) and the thresholds that
        gave each (``*_threshold``).
    """
    prob = np.asarray(probability, dtype=np.float64)
    truth = np.asarray(truth_cells) > 0
    if prob.shape != truth.shape:
        raise ValueError(f"proposal shape {prob.shape} differs from ground truth shape {truth.shape}")
    if not np.all(np.isfinite(prob)) or prob.min(initial=0) < 0 or prob.max(initial=0) > 1:
        raise ValueError("the proposal must be a probability in [0, 1] (finite values)")
    truth_segments = label_components(truth)
    best = {"vrand_thinned": (-1.0, 0.0), "vinfo_thinned": (-1.0, 0.0), "fscore": (-1.0, 0.0)}
    for tau in thresholds:
        cells = prob > tau
        vrand, vinfo = vrand_vinfo(label_components(cells), truth_segments)
        tp = float(np.sum(cells & truth))
        fscore = 2 * tp / (cells.sum() + truth.sum()) if (cells.sum() + truth.sum()) else 1.0
        for key, value in (("vrand_thinned", vrand), ("vinfo_thinned", vinfo), ("fscore", fscore)):
            if value > best[key][0]:
                best[key] = (value, float(tau))
    return {
        "vrand_thinned": best["vrand_thinned"][0],
        "vrand_threshold": best["vrand_thinned"][1],
        "vinfo_thinned": best["vinfo_thinned"][0],
        "vinfo_threshold": best["vinfo_thinned"][1],
        "pixel_error": float(1.0 - best["fscore"][0]),
        "pixel_error_threshold": best["fscore"][1],
    }
