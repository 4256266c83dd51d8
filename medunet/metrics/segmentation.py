"""Pixel error, Rand error (ISBI 2012) and object-level F1 as functions and Ignite metrics.

Dice and IoU come from MONAI (``MeanDice``/``MeanIoUHandler``); these are the EM and instance metrics it lacks.
The Ignite metrics read ``(pred, label)`` from the evaluator's output, where ``pred`` holds class
indices or one-hot/probability channels (argmax is taken) and ``label`` class indices or one-hot channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from medunet.metrics.instances import instance_scores

__all__ = [
    "InstanceMetric",
    "ObjectF1Metric",
    "PixelErrorMetric",
    "RandErrorMetric",
    "object_f1",
    "pixel_error",
    "rand_error",
    "rand_error_instances",
]


def pixel_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose class differs (ISBI 2012 pixel error)."""
    return float(np.mean(np.asarray(pred) != np.asarray(truth)))


def rand_error(pred_foreground: np.ndarray, truth_foreground: np.ndarray) -> float:
    """ISBI 2012 Rand error: 1 - adapted Rand F-score between the connected components of the foreground
    (cells; membranes/background are the boundaries), scikit-image's ``adapted_rand_error``."""
    seg, _ = ndimage.label(np.asarray(pred_foreground) > 0)
    gt, _ = ndimage.label(np.asarray(truth_foreground) > 0)
    error, _, _ = adapted_rand_error(gt, seg, ignore_labels=(0,))
    return float(error)


def rand_error_instances(pred_instances: np.ndarray, truth_instances: np.ndarray) -> float:
    """The same Rand error between two instance-label images as they are (no relabelling): for a prediction
    whose touching objects were split by the post-processing; truth label 0 is ignored."""
    error, _, _ = adapted_rand_error(
        np.asarray(truth_instances).astype(np.int64), np.asarray(pred_instances).astype(np.int64), ignore_labels=(0,)
    )
    return float(error)


def object_f1(pred_instances: np.ndarray, truth_instances: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level precision/recall/F1 (and AP at one threshold: TP / (TP + FP + FN)) by IoU matching.

    With IoU > 0.5 a match is unique, so counting pairs above the threshold is an exact matching.
    """
    pred = np.asarray(pred_instances).astype(np.int64)
    truth = np.asarray(truth_instances).astype(np.int64)
    n_pred, n_true = int(pred.max(initial=0)), int(truth.max(initial=0))
    if n_pred == 0 or n_true == 0:
        tp = 0
    else:
        pairs = pred.ravel() * (n_true + 1) + truth.ravel()
        inter = np.bincount(pairs, minlength=(n_pred + 1) * (n_true + 1)).reshape(n_pred + 1, n_true + 1)
        area_p = inter.sum(axis=1, keepdims=True)
        area_t = inter.sum(axis=0, keepdims=True)
        iou = inter / np.maximum(area_p + area_t - inter, 1)
        tp = int((iou[1:, 1:] > iou_threshold).sum())
    fp, fn = n_pred - tp, n_true - tp
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * tp / (n_pred + n_true) if (n_pred + n_true) else 1.0
    ap = tp / (tp + fp + fn) if (tp + fp + fn) else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "ap": ap}


def _classes(x: Any) -> np.ndarray:
    """Class-index array (B, *S) from (B, C, *S) one-hot/probabilities or (B, 1, *S) indices."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim >= 3 and t.shape[1] > 1:
        t = t.argmax(dim=1)
    elif t.ndim >= 3:
        t = t[:, 0]
    return t.detach().cpu().numpy().astype(np.int64)


class _MeanOverImages(Metric):
    """Averages a per-image score over all images of an evaluation run."""

    def __init__(
        self, output_transform: Callable[[Any], Any] = lambda x: x, device: str | torch.device = "cpu"
    ) -> None:
        self._scores: list[float] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._scores = []

    def score(self, pred: np.ndarray, truth: np.ndarray) -> float:
        raise NotImplementedError

    def update(self, output: Sequence[Any]) -> None:
        pred, label = output[0], output[1]
        if isinstance(pred, (list, tuple)):  # decollated batch
            pred, label = torch.stack(list(pred)), torch.stack(list(label))
        for p, t in zip(_classes(pred), _classes(label)):
            self._scores.append(self.score(p, t))

    def compute(self) -> float:
        import ignite.distributed as idist

        totals = torch.tensor([float(np.sum(self._scores)), float(len(self._scores))], dtype=torch.float64)
        if idist.get_world_size() > 1:
            totals = torch.as_tensor(idist.all_reduce(totals))
        return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")


class PixelErrorMetric(_MeanOverImages):
    def score(self, pred: np.ndarray, truth: np.ndarray) -> float:
        return pixel_error(pred, truth)


class RandErrorMetric(_MeanOverImages):
    """Rand error between foreground (class ``foreground_class``) components, or, with ``instances=True``,
    between instance-label images as given (e.g. ``pred_instances`` and ``instances``)."""

    def __init__(self, foreground_class: int = 1, instances: bool = False, **kwargs: Any) -> None:
        self.foreground_class, self.instances = foreground_class, instances
        super().__init__(**kwargs)

    def score(self, pred: np.ndarray, truth: np.ndarray) -> float:
        if self.instances:
            return rand_error_instances(pred, truth)
        return rand_error(pred == self.foreground_class, truth == self.foreground_class)


class ObjectF1Metric(_MeanOverImages):
    """Object F1 at IoU > ``iou_threshold`` between connected components of the foreground class."""

    def __init__(self, foreground_class: int = 1, iou_threshold: float = 0.5, **kwargs: Any) -> None:
        self.foreground_class = foreground_class
        self.iou_threshold = iou_threshold
        super().__init__(**kwargs)

    def score(self, pred: np.ndarray, truth: np.ndarray) -> float:
        p, _ = ndimage.label(pred == self.foreground_class)
        t, _ = ndimage.label(truth == self.foreground_class)
        return object_f1(p, t, self.iou_threshold)["f1"]


class InstanceMetric(_MeanOverImages):
    """One score of :func:`medunet.metrics.instances.instance_scores` (``"f1"``, ``"ap@0.50"``, ``"ap_mean"``,
    ``"pq"``, ``"merged"``, ``"split"``, ...) averaged over images; reads ``(pred_instances, truth_instances)``,
    each ``(B, 1, *S)`` instance labels."""

    def __init__(self, score: str = "f1", **kwargs: Any) -> None:
        known = set(instance_scores(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32)))
        if score not in known:
            raise ValueError(f"score={score!r} is not an instance score; choose one of {sorted(known)}")
        self.score_name = score
        super().__init__(**kwargs)

    def score(self, pred: np.ndarray, truth: np.ndarray) -> float:
        return instance_scores(pred, truth)[self.score_name]
