"""Batch preparation: targets cropped to the network's output region, weight maps stacked as a channel."""

from __future__ import annotations

import torch

from medunet.engines import ValidOutputPrepareBatch
from medunet.networks import UNetGeometry


def test_prepare_batch_crops_and_stacks_weights() -> None:
    geometry = UNetGeometry.create(2, 3)
    batch = {
        "image": torch.zeros(2, 1, 60, 76),
        "label": torch.ones(2, 1, 60, 76),
        "weight": torch.full((2, 1, 60, 76), 3.0),
    }
    image, target = ValidOutputPrepareBatch(geometry)(batch)
    assert image.shape == (2, 1, 60, 76)
    assert target.shape == (2, 2, *geometry.output_shape((60, 76)))
    assert float(target[:, 1].min()) == 3.0
    cropped = {"image": batch["image"], "label": torch.ones(2, 1, 28, 44)}
    assert ValidOutputPrepareBatch(geometry)(cropped)[1].shape == (2, 1, 28, 44)
