"""The paper's elastic deformation as MONAI transforms: one random field applied to every key."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, ensure_tuple_rep

from medunet.transforms.functional.elastic import dense_displacement_field, elastic_deform, sample_grid_displacements

__all__ = ["RandUNetElastic", "RandUNetElasticd"]


def _warp(img: Any, field: np.ndarray, order: int, mode: str) -> Any:
    array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    out = elastic_deform(array, field, order=order, mode=mode)
    return convert_to_dst_type(out, dst=img, dtype=img.dtype)[0]


class RandUNetElastic(RandomizableTransform):
    """Elastic deformation of a channel-first image (paper section 3.1).

    Args:
        prob: probability of deforming.
        points: control points per axis (3 in the paper).
        sigma: standard deviation of the control-point displacements, px (10 in the paper).
        order: interpolation order (3 for images, 0 for labels).
        mode: border handling for sampling outside the image (``"mirror"``).
    """

    def __init__(
        self,
        prob: float = 1.0,
        points: int | Sequence[int] = 3,
        sigma: float = 10.0,
        order: int = 3,
        mode: str = "mirror",
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.points, self.sigma, self.order, self.mode = points, sigma, order, mode
        self.grid: np.ndarray | None = None

    def randomize(self, spatial_dims: int) -> None:
        super().randomize(None)
        self.grid = (
            sample_grid_displacements(self.R, spatial_dims, self.points, self.sigma) if self._do_transform else None
        )

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize(img.ndim - 1)
        if self.grid is None:
            return img
        return _warp(img, dense_displacement_field(self.grid, img.shape[1:]), self.order, self.mode)


class RandUNetElasticd(RandomizableTransform, MapTransform):
    """Elastic deformation with one field for all ``keys``; ``order`` per key (3 for images, 0 for labels)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        points: int | Sequence[int] = 3,
        sigma: float = 10.0,
        order: int | Sequence[int] = 3,
        mode: str = "mirror",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.orders = ensure_tuple_rep(order, len(self.keys))
        self.points, self.sigma, self.mode = points, sigma, mode
        self.grid: np.ndarray | None = None

    def randomize(self, spatial_dims: int) -> None:
        super().randomize(None)
        self.grid = (
            sample_grid_displacements(self.R, spatial_dims, self.points, self.sigma) if self._do_transform else None
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = next(iter(self.key_iterator(d)), None)
        if first is None:
            return d
        spatial = d[first].shape[1:]
        self.randomize(len(spatial))
        if self.grid is None:
            return d
        field = dense_displacement_field(self.grid, spatial)
        for key, order in self.key_iterator(d, self.orders):
            if d[key].shape[1:] != spatial:
                raise ValueError(
                    f"RandUNetElasticd: '{key}' has spatial shape {tuple(d[key].shape[1:])}, '{first}' has {tuple(spatial)}"
                )
            d[key] = _warp(d[key], field, order, self.mode)
        return d
