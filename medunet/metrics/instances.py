"""Instance-segmentation metrics: average precision over IoU thresholds (DSB 2018 / StarDist), F1, panoptic
quality, and counts of merged and split objects.

Definitions (``pred`` and ``truth`` are instance-label images, 0 = background):

- IoU of a predicted object ``p`` and a true object ``t``: ``|p ∩ t| / |p ∪ t|``.
- At a threshold ``τ`` predicted and true objects are matched one-to-one, maximising the summed IoU over pairs
  with ``IoU >= τ`` (for ``τ > 0.5`` any pair above ``τ`` is the only one for both objects, so the matching is
  unique). ``TP`` = matched pairs, ``FP`` = unmatched predicted, ``FN`` = unmatched true objects.
- ``AP(τ) = TP / (TP + FP + FN)``: the Data Science Bowl 2018's "average precision" at one threshold
  (StarDist calls it accuracy); ``ap_mean`` averages it over ``τ`` = 0.5, 0.55, ..., 0.9.
- ``F1(τ) = 2 TP / (2 TP + FP + FN)``, precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``.
- Panoptic quality (Kirillov et al. 2019) at ``τ = 0.5``: ``sum of matched IoUs / (TP + FP/2 + FN/2)``.
- ``merged``: true objects that share their predicted object with another true object, counting each true
  object whose largest overlap is with a predicted object that also holds most of another true object. A
  true object "lies in" a predicted object when more than half of its voxels do.
- ``split``: true objects of which two or more predicted objects lie mostly (more than half of each predicted
  object's voxels) inside.

Written here because neither MONAI nor scikit-image has the DSB / panoptic definitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["AP_THRESHOLDS", "instance_scores", "iou_matrix", "match_count"]

AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))


def _labels(x: Any, name: str) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind == "f":
        if not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold integer instance labels, found non-integer values")
        array = array.astype(np.int64)
    if array.dtype.kind not in "iub":
        raise ValueError(f"{name} must be an integer instance-label image, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds negative labels ({array.min()}); instance labels are 0 (background) or 1..N")
    return array


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..N (0 kept for background), N."""
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if values[0] != 0:
        return inverse + 1, len(values)
    return inverse, len(values) - 1


def iou_matrix(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(intersections, iou)``, both ``(N_pred + 1, N_true + 1)`` with row/column 0 for background; labels
    need not be consecutive (they are renumbered)."""
    p, n_pred = _compact(_labels(pred, "prediction"))
    t, n_true = _compact(_labels(truth, "truth"))
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    inter = np.bincount((p * (n_true + 1) + t).ravel(), minlength=(n_pred + 1) * (n_true + 1))
    inter = inter.reshape(n_pred + 1, n_true + 1).astype(np.float64)
    area_p = inter.sum(axis=1, keepdims=True)
    area_t = inter.sum(axis=0, keepdims=True)
    iou = inter / np.maximum(area_p + area_t - inter, 1.0)
    return inter, iou


def match_count(iou: np.ndarray, threshold: float) -> tuple[int, float]:
    """Matched pairs with ``IoU >= threshold`` in a one-to-one matching of maximal summed IoU, and that sum
    (``iou`` without the background row/column)."""
    if iou.size == 0:
        return 0, 0.0
    eligible = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(eligible, maximize=True)
    matched = eligible[rows, cols] > 0
    return int(matched.sum()), float(eligible[rows, cols][matched].sum())


def instance_scores(pred: Any, truth: Any, thresholds: tuple[float, ...] = AP_THRESHOLDS) -> dict[str, float]:
    """All instance metrics of one image (see the module docstring): ``ap@τ`` per threshold, ``ap_mean``,
    ``f1``/``precision``/``recall``/``pq`` at 0.5, ``merged``, ``split``, ``n_pred``, ``n_true``."""
    inter, iou = iou_matrix(pred, truth)
    n_pred, n_true = iou.shape[0] - 1, iou.shape[1] - 1
    core = iou[1:, 1:]
    scores: dict[str, float] = {"n_pred": float(n_pred), "n_true": float(n_true)}
    aps = []
    for tau in thresholds:
        tp, _ = match_count(core, tau)
        denominator = n_pred + n_true - tp
        aps.append(tp / denominator if denominator else 1.0)
        scores[f"ap@{tau:.2f}"] = aps[-1]
    scores["ap_mean"] = float(np.mean(aps))
    tp, iou_sum = match_count(core, 0.5)
    fp, fn = n_pred - tp, n_true - tp
    scores["precision"] = tp / n_pred if n_pred else float(n_true == 0)
    scores["recall"] = tp / n_true if n_true else 1.0
    scores["f1"] = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    scores["pq"] = iou_sum / (tp + fp / 2 + fn / 2) if (tp + fp + fn) else 1.0

    # merged / split from the overlaps (column 0 / row 0 are background)
    area_t = inter.sum(axis=0)[1:]
    area_p = inter.sum(axis=1)[1:]
    ov = inter[1:, 1:]
    truth_in = ov > 0.5 * area_t[None, :]  # [p, t]: most of true object t lies in predicted object p
    truth_per_pred = truth_in.sum(axis=1)
    scores["merged"] = float(truth_per_pred[truth_per_pred >= 2].sum())
    pred_in = ov > 0.5 * area_p[:, None]  # [p, t]: most of predicted object p lies in true object t
    scores["split"] = float((pred_in.sum(axis=0) >= 2).sum())
    return scores
