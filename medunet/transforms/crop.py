"""Crops for valid-convolution training: labels/weights to the network's output region, random tiles."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop
from monai.utils import ensure_tuple

from medunet.networks.geometry import UNetGeometry
from medunet.utils.enums import PaddingMode, look_up
from medunet.utils.regions import extract_region

__all__ = ["CropToOutputd", "RandValidTiled", "crop_to_output"]


def crop_to_output(x: Any, geometry: UNetGeometry) -> Any:
    """Centre-crops a channel-first array or MetaTensor from an input-tile shape to the network's output
    shape (margin removed on every side; the affine follows)."""
    spatial = tuple(int(s) for s in x.shape[1:])
    out = geometry.output_shape(spatial)
    start = [(s - o) // 2 for s, o in zip(spatial, out)]
    return SpatialCrop(roi_start=start, roi_end=[a + o for a, o in zip(start, out)])(x)


class CropToOutputd(MapTransform):
    """Centre-crops ``keys`` (labels, weights of the input tile's size) to the network's output region."""

    def __init__(self, keys: KeysCollection, geometry: UNetGeometry, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.geometry = geometry

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = crop_to_output(d[key], self.geometry)
        return d


def _with_region(x: Any, array: np.ndarray, start: Sequence[int]) -> Any:
    """Wraps an extracted region like ``x`` (a MetaTensor gets the affine translated to ``start``).

    The region may be a view of the cached image, so it is copied: a later in-place transform must not
    change the cache."""
    array = np.array(array, copy=True)
    tensor = torch.as_tensor(array)
    if not isinstance(x, MetaTensor):
        return tensor if isinstance(x, torch.Tensor) else array
    affine = x.affine.clone()
    dims = len(start)
    affine[:dims, dims] = affine[:dims, dims] + affine[:dims, :dims] @ torch.as_tensor(start, dtype=affine.dtype)
    out = MetaTensor(tensor, meta=dict(x.meta))
    out.affine = affine
    return out


class RandValidTiled(Randomizable, MapTransform):
    """Random training tiles of valid input size with the matching output-region crops.

    Draws ``num_samples`` output regions of ``output_tile`` uniformly inside the image; the input tile is
    that region grown by the network's margin, taken from the mirror-extended image, so images smaller than
    one tile and regions at the border work as in inference. ``label_keys`` (labels, weight maps) are cut to
    the output region only, ready for the loss. Returns a list of dictionaries (MONAI's multi-sample
    convention, flattened by ``DataLoader``/``list_data_collate``).

    Args:
        image_keys: inputs cut to the input tile.
        label_keys: targets cut to the output region.
        geometry: the network's geometry.
        output_tile: output tile (per axis); the input tile is ``geometry.input_shape_for(output_tile)``.
        num_samples: tiles per image.
        padding_mode: border extension (``"symmetric"``, the paper's mirroring).
        foreground_ratio: the fraction of tiles drawn to hold foreground (nnU-Net's oversampling, for small
            structures such as tumours): such a tile's output region holds a voxel drawn uniformly from the
            foreground (``> 0``) of the first label key, at a uniformly drawn place in the region (within the image).
            The other tiles, and all tiles of an image without foreground, are drawn uniformly.
    """

    def __init__(
        self,
        image_keys: KeysCollection,
        label_keys: KeysCollection,
        geometry: UNetGeometry,
        output_tile: Sequence[int],
        num_samples: int = 1,
        padding_mode: str | PaddingMode = PaddingMode.SYMMETRIC,
        foreground_ratio: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, image_keys, allow_missing_keys)
        if not 0.0 <= foreground_ratio <= 1.0:
            raise ValueError(f"foreground_ratio must be from 0 to 1, got {foreground_ratio}")
        self.foreground_ratio = float(foreground_ratio)
        self.label_keys = ensure_tuple(label_keys)
        self.geometry = geometry
        self.input_tile = geometry.input_shape_for(output_tile)
        self.output_tile = geometry.output_shape(self.input_tile)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.mode = look_up(padding_mode, PaddingMode, "padding_mode")
        self.starts: list[tuple[int, ...]] = []

    def randomize(self, spatial_shape: Sequence[int], foreground: np.ndarray | None = None) -> None:
        """Draws the output regions' starts; ``foreground``: the foreground voxels' indices ``(n, dims)``."""
        self.starts = []
        for _ in range(self.num_samples):
            if foreground is not None and len(foreground) and self.R.rand() < self.foreground_ratio:
                voxel = foreground[self.R.randint(len(foreground))]
                start = tuple(
                    int(min(max(v - self.R.randint(o), 0), max(s - o, 0)))
                    for v, s, o in zip(voxel, spatial_shape, self.output_tile)
                )
            else:
                start = tuple(
                    int(self.R.randint(0, max(s - o, 0) + 1)) for s, o in zip(spatial_shape, self.output_tile)
                )
            self.starts.append(start)

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            raise KeyError(f"RandValidTiled: none of the image keys {self.keys} is in the data")
        spatial = tuple(int(s) for s in d[keys[0]].shape[1:])
        for key in [*keys, *[k for k in self.label_keys if k in d]]:
            if tuple(d[key].shape[1:]) != spatial:
                raise ValueError(
                    f"RandValidTiled: '{key}' has spatial shape {tuple(d[key].shape[1:])}, '{keys[0]}' has {spatial}"
                )
        foreground = None
        if self.foreground_ratio > 0 and self.label_keys and self.label_keys[0] in d:
            label = d[self.label_keys[0]]
            label = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
            foreground = np.argwhere(np.any(label > 0, axis=0))
        self.randomize(spatial, foreground)
        margin = self.geometry.margin
        samples = []
        for start in self.starts:
            sample = dict(d)
            in_start = [s - m for s, m in zip(start, margin)]
            for key in keys:
                array = np.asarray(d[key].detach().cpu() if isinstance(d[key], torch.Tensor) else d[key])
                sample[key] = _with_region(
                    d[key], extract_region(array, in_start, self.input_tile, self.mode), in_start
                )
            for key in self.label_keys:
                if key not in d:
                    continue
                array = np.asarray(d[key].detach().cpu() if isinstance(d[key], torch.Tensor) else d[key])
                sample[key] = _with_region(d[key], extract_region(array, start, self.output_tile, self.mode), start)
            samples.append(sample)
        return samples
