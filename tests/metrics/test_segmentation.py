"""Pixel error, Rand error and object F1 on small cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medunet.metrics import ObjectF1Metric, PixelErrorMetric, RandErrorMetric, object_f1, pixel_error, rand_error


def two_cells() -> np.ndarray:
    fg = np.zeros((20, 30), np.int64)
    fg[2:18, 2:13] = 1
    fg[2:18, 15:28] = 1
    return fg


def test_perfect_and_merged_segmentations() -> None:
    truth = two_cells()
    assert pixel_error(truth, truth) == 0.0
    assert rand_error(truth, truth) == pytest.approx(0.0)
    merged = truth.copy()
    merged[2:18, 13:15] = 1  # the membrane between the cells is lost: one object
    assert pixel_error(merged, truth) == pytest.approx(32 / 600)
    assert rand_error(merged, truth) > 0.2
    inst = np.zeros_like(truth)
    inst[2:18, 2:13], inst[2:18, 15:28] = 1, 2
    assert object_f1(inst, inst)["f1"] == 1.0
    merged_inst = (merged > 0).astype(np.int64)
    result = object_f1(merged_inst, inst)
    assert result["f1"] == pytest.approx(0.0)  # the merged object overlaps each cell with IoU < 0.5
    assert object_f1(np.zeros_like(inst), inst) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "ap": 0.0}


def test_ignite_metrics_on_onehot_batches() -> None:
    truth = torch.from_numpy(two_cells())
    onehot = torch.stack([1 - truth, truth])[None].float()  # (1, 2, H, W)
    for metric, expected in [(PixelErrorMetric(), 0.0), (RandErrorMetric(), 0.0), (ObjectF1Metric(), 1.0)]:
        metric.reset()
        metric.update(([onehot[0]], [onehot[0]]))
        assert metric.compute() == pytest.approx(expected, abs=1e-9)
