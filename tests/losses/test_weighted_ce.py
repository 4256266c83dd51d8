"""The weighted cross-entropy against a direct computation."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from medunet.losses import WeightedCrossEntropyLoss


def test_weighted_ce_matches_definition() -> None:
    torch.manual_seed(0)
    pred = torch.randn(2, 3, 8, 9)
    label = torch.randint(0, 3, (2, 1, 8, 9)).float()
    weight = torch.rand(2, 1, 8, 9) * 10
    loss = WeightedCrossEntropyLoss()(pred, torch.cat([label, weight], 1))
    log_p = F.log_softmax(pred, 1).gather(1, label.long())
    assert float(loss) == pytest.approx(float((-log_p * weight).mean()), rel=1e-5)
    plain = WeightedCrossEntropyLoss()(pred, label)
    assert float(plain) == pytest.approx(float(F.cross_entropy(pred, label[:, 0].long())), rel=1e-5)


def test_dice_term_and_shape_errors() -> None:
    pred = torch.randn(1, 2, 6, 6, 6)
    label = torch.randint(0, 2, (1, 1, 6, 6, 6)).float()
    assert float(WeightedCrossEntropyLoss(dice_weight=1.0)(pred, label)) > float(
        WeightedCrossEntropyLoss()(pred, label)
    )
    with pytest.raises(ValueError, match="crop labels to the network's output"):
        WeightedCrossEntropyLoss()(pred, torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="1 \\(labels\\) or 2"):
        WeightedCrossEntropyLoss()(pred, torch.zeros(1, 3, 6, 6, 6))
