"""Losses: the paper's weighted cross-entropy (+ optional Dice)."""

from medunet.losses.weighted_ce import WeightedCrossEntropyLoss

__all__ = ["WeightedCrossEntropyLoss"]
