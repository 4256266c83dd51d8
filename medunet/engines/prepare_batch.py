"""``prepare_batch`` for MONAI's ``SupervisedTrainer`` with a valid-convolution network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines import PrepareBatch

from medunet.networks.blocks import center_crop
from medunet.networks.geometry import UNetGeometry

__all__ = ["ValidOutputPrepareBatch"]


class ValidOutputPrepareBatch(PrepareBatch):
    """Returns ``(image, target)`` where ``target`` is cropped to the network's output region.

    Labels (and weight maps) of the input tile's size are centre-cropped to the output size the geometry
    gives for the image tile; already-cropped ones (from :class:`~medunet.transforms.RandValidTiled`) pass
    as they are. MONAI's trainer hands only ``(pred, target)`` to the loss, so a weight map travels as a
    second target channel: ``target = cat([label, weight])``, which
    :class:`~medunet.losses.WeightedCrossEntropyLoss` splits again.

    Args:
        geometry: the network's geometry (None: no cropping, shapes must already match).
        image_key / label_key / weight_key: batch keys; a missing weight key means unweighted.
    """

    def __init__(
        self,
        geometry: UNetGeometry | None = None,
        image_key: str = "image",
        label_key: str = "label",
        weight_key: str | None = "weight",
    ) -> None:
        self.geometry = geometry
        self.image_key, self.label_key, self.weight_key = image_key, label_key, weight_key

    def _crop(self, x: torch.Tensor, image_shape: tuple[int, ...]) -> torch.Tensor:
        if self.geometry is None or tuple(x.shape[2:]) != image_shape:
            return x
        return center_crop(x, self.geometry.output_shape(image_shape))

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = batchdata[self.image_key]
        spatial = tuple(int(s) for s in image.shape[2:])
        label = self._crop(torch.as_tensor(batchdata[self.label_key]), spatial).float()
        parts = [label]
        if self.weight_key is not None and self.weight_key in batchdata:
            parts.append(self._crop(torch.as_tensor(batchdata[self.weight_key]), spatial).float())
        target = torch.cat(parts, dim=1) if len(parts) > 1 else label
        return (
            image.to(device=device, non_blocking=non_blocking, **kwargs),
            target.to(device=device, non_blocking=non_blocking, **kwargs),
        )
