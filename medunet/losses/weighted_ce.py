"""The U-Net paper's energy function: pixel-wise softmax + cross-entropy weighted by w(x) (section 3, eq. 1)."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn
from torch.nn import functional as F

__all__ = ["WeightedCrossEntropyLoss"]


class WeightedCrossEntropyLoss(nn.Module):
    """``mean_x w(x) * CE(p(x), l(x))`` plus ``dice_weight`` times a soft Dice loss.

    ``target`` is ``(B, 1, *S)`` class indices, or ``(B, 2, *S)`` with the weight map ``w`` in channel 1
    (how :class:`medunet.engines.ValidOutputPrepareBatch` hands the weight map to the loss through MONAI's
    trainer, whose loss takes only prediction and target). Without a weight channel ``w = 1``.

    Args:
        dice_weight: weight of the Dice term (0: the paper's loss alone).
        ignore_index: class index excluded from the loss (e.g. an unlabelled region), or None.
    """

    def __init__(self, dice_weight: float = 0.0, ignore_index: int | None = None) -> None:
        super().__init__()
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.dice = DiceLoss(to_onehot_y=True, softmax=True) if dice_weight > 0 else None

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[0] != pred.shape[0] or target.shape[2:] != pred.shape[2:]:
            raise ValueError(
                f"target {tuple(target.shape)} does not match the prediction {tuple(pred.shape)} in batch and spatial "
                "size; crop labels to the network's output (medunet.transforms.RandValidTiled / CropToOutputd)"
            )
        if target.shape[1] not in (1, 2):
            raise ValueError(f"target must have 1 (labels) or 2 (labels, weights) channels, got {target.shape[1]}")
        labels = target[:, 0].long()
        weights = target[:, 1].float() if target.shape[1] == 2 else None
        ce = F.cross_entropy(
            pred.float(),
            labels,
            reduction="none",
            ignore_index=self.ignore_index if self.ignore_index is not None else -100,
        )
        loss = (ce * weights).mean() if weights is not None else ce.mean()
        if self.dice is not None:
            loss = loss + self.dice_weight * self.dice(pred.float(), target[:, :1])
        return loss
