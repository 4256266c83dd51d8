"""Weight-map transforms (array and dictionary forms) around :func:`unet_weight_map`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from medunet.transforms.functional.weight_map import unet_weight_map

__all__ = ["UNetWeightMap", "UNetWeightMapd"]


class UNetWeightMap(Transform):
    """Channel-first label ``(1, *S)`` -> weight map ``(1, *S)`` float32 (paper eq. 2).

    Args:
        w0, sigma, binary, separate, class_weights, tolerance: see :func:`unet_weight_map`.
        use_spacing: take the voxel spacing from the MetaTensor's affine so ``sigma`` is in mm.
    """

    def __init__(
        self,
        w0: float = 10.0,
        sigma: float = 5.0,
        binary: bool = False,
        separate: bool = True,
        class_weights: str | Sequence[float] | None = "balanced",
        use_spacing: bool = False,
        tolerance: float = 1e-6,
    ) -> None:
        self.kwargs: dict[str, Any] = {
            "w0": w0,
            "sigma": sigma,
            "binary": binary,
            "separate": separate,
            "class_weights": class_weights,
            "tolerance": tolerance,
        }
        self.use_spacing = use_spacing

    def __call__(self, label: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        if label.shape[0] != 1:
            raise ValueError(f"UNetWeightMap expects a one-channel label (1, *spatial), got shape {tuple(label.shape)}")
        spacing = None
        if self.use_spacing and isinstance(label, MetaTensor):
            spacing = [float(v) for v in label.pixdim[: label.ndim - 1]]
        array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        weights = unet_weight_map(array[0], spacing=spacing, **self.kwargs)[None]
        return convert_to_dst_type(
            weights, dst=label, dtype=torch.float32 if isinstance(label, torch.Tensor) else np.float32
        )[0]


class UNetWeightMapd(MapTransform):
    """Adds ``output_key`` (default ``"weight"``) computed from the label under ``keys``."""

    def __init__(
        self, keys: KeysCollection, output_key: str = "weight", allow_missing_keys: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"UNetWeightMapd takes one label key, got {self.keys}")
        self.output_key = output_key
        self.transform = UNetWeightMap(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.transform(d[key])
        return d
