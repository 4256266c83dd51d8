"""The cost of one network pass over a tile: its arithmetic and its peak memory.

The tile planner (:mod:`medunet.inference.tiling`) picks the tile size with the least total arithmetic that
fits a memory budget, and the inference benchmark reports the plan's redundancy; both ask this model, which
is the one place to change when the estimate should change (another backend, another block).

Only the layer shapes matter, and :meth:`UNetGeometry.layer_shapes` gives them, so the model holds no
network: ``TileCostModel.for_network(net)`` reads the widths from a :class:`~medunet.networks.ValidUNet`.
``benchmarks/cost_model.py`` checks :meth:`TileCostModel.peak_bytes` against the measured peak memory of
passes (``benchmarks/results/cost_model.md``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medunet.networks.geometry import UNetGeometry

__all__ = ["ALLOCATOR_SLACK", "BACKEND_COPIES", "TileCostModel"]

BACKEND_COPIES = 2
"""Copies of the largest pair of consecutive feature maps that a convolution may hold at once: its input and
output, and on the CPU a reordered copy of each (oneDNN computes in blocked layouts such as ``nChw16c``)."""

ALLOCATOR_SLACK = 1.15
"""Memory the allocator holds beyond the live tensors (freed blocks not yet reusable, rounding); 15 % matched
the peak resident memory of 2D passes on the CPU to within about 10 %."""


@dataclass(frozen=True)
class TileCostModel:
    """Arithmetic and peak activation memory of one inference pass of a valid-convolution U-Net over a tile.

    Attributes:
        geometry: the network's geometry (layer shapes for any valid input tile).
        features: channels per level (``len(features) == geometry.depth``).
        in_channels / out_channels: input channels and classes.
        bytes_per_value: bytes of one activation value: 4 in float32, 2 under float16/bfloat16 autocast
            (AMP), which halves the memory of every feature map.
    """

    geometry: UNetGeometry
    features: tuple[int, ...]
    in_channels: int = 1
    out_channels: int = 2
    bytes_per_value: int = 4

    def __post_init__(self) -> None:
        if len(self.features) != self.geometry.depth:
            raise ValueError(
                f"features {self.features} must have one entry per level of the geometry ({self.geometry.depth})"
            )
        if self.bytes_per_value < 1:
            raise ValueError(f"bytes_per_value must be >= 1, got {self.bytes_per_value}")

    @classmethod
    def for_network(
        cls, network: Any, dtype: torch.dtype = torch.float32, geometry: UNetGeometry | None = None
    ) -> TileCostModel:
        """The model of a :class:`~medunet.networks.ValidUNet` (or anything with ``geometry``, ``features``,
        ``in_channels``, ``out_channels``) computing its activations in ``dtype`` (``torch.float16`` under AMP);
        ``geometry`` replaces the network's own."""
        return cls(
            network.geometry if geometry is None else geometry,
            tuple(int(f) for f in network.features),
            int(getattr(network, "in_channels", 1)),
            int(getattr(network, "out_channels", 2)),
            torch.empty((), dtype=dtype).element_size(),
        )

    def macs(self, input_tile: Sequence[int]) -> int:
        """Multiply-accumulates of one pass over a tile (convolutions only; pools and ReLUs are negligible)."""
        k = self.geometry.kernel_size**self.geometry.spatial_dims
        layers = self.geometry.layer_shapes(input_tile)
        total = 0
        channels = self.in_channels
        for layer in layers:
            if layer.kind == "pool":
                continue
            voxels = math.prod(layer.spatial_shape)
            f = self.features[layer.level]
            if layer.kind == "upconv":
                # kernel = stride: each output voxel receives one tap per input channel
                total += voxels * self.features[layer.level + 1] * f
                channels = 2 * f  # the next convolution sees the concatenation with the skip
            else:
                total += voxels * channels * f * k
                channels = f
        return total + math.prod(layers[-1].spatial_shape) * self.features[0] * self.out_channels

    def flops(self, input_tile: Sequence[int]) -> int:
        """Floating-point operations of one pass (two per multiply-accumulate)."""
        return 2 * self.macs(input_tile)

    def peak_bytes(self, input_tile: Sequence[int], batch_size: int = 1) -> int:
        """Estimated peak activation memory of a pass over ``batch_size`` tiles (no autograd graph), in bytes.

        The skip connections stay alive until the expanding path uses them; on top of them a convolution holds
        ``BACKEND_COPIES`` times the largest pair of consecutive feature maps, and the allocator
        ``ALLOCATOR_SLACK`` more. The skips and the pair overlap at the first level, so the estimate is an upper
        bound where the first level dominates (3D networks with few features); see
        ``benchmarks/results/cost_model.md`` for how it compares with measured peaks.
        """
        sizes: list[int] = [math.prod(input_tile) * self.in_channels]
        skips = 0
        layers = self.geometry.layer_shapes(input_tile)
        for i, layer in enumerate(layers):
            channels = self.features[layer.level]
            voxels = math.prod(layer.spatial_shape)
            if layer.kind == "pool":
                skips += math.prod(layers[i - 1].spatial_shape) * channels
            if layer.kind == "upconv":
                channels *= 2  # the concatenation follows
            sizes.append(voxels * channels)
        sizes.append(math.prod(layers[-1].spatial_shape) * self.out_channels)
        pair = max(a + b for a, b in itertools.pairwise(sizes))
        return int(ALLOCATOR_SLACK * (skips + BACKEND_COPIES * pair) * batch_size * self.bytes_per_value)
