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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medunet.networks.geometry import UNetGeometry

if TYPE_CHECKING:
    import torch

__all__ = ["BACKEND_MEMORY", "TileCostModel"]

BACKEND_MEMORY: dict[tuple[str, int], tuple[float, int]] = {
    ("cpu", 2): (1.0, 2 * 2**20),
    ("cpu", 3): (0.95, 2 * 2**20),
    ("cuda", 2): (1.25, 64 * 2**20),
    ("cuda", 3): (1.25, 64 * 2**20),
}
"""Per backend (device type) and spatial dimensions: the factor on the live activations and column buffers
(:meth:`TileCostModel.live_values`) and the bytes a pass needs besides them. The CPU's are fitted to the peaks
that ``benchmarks/cost_model.py`` measured (``benchmarks/results/cost_model.md``: oneDNN with channels-last
tensors, as the inferers run; within 5 % from 284 x 284 to 1244 x 1244 and from 92^3 to 284 x 284 x 188). The
CUDA entries are a margin for cuDNN's workspaces that no measurement has checked yet (``benchmarks/cuda.sh``
measures them on a GPU)."""


@dataclass(frozen=True)
class TileCostModel:
    """Arithmetic and peak activation memory of one inference pass of a valid-convolution U-Net over a tile.

    Attributes:
        geometry: the network's geometry (layer shapes for any valid input tile).
        features: channels per level (``len(features) == geometry.depth``).
        in_channels / out_channels: input channels and classes.
        bytes_per_value: bytes of one activation value: 4 in float32, 2 under a bfloat16 / float16 preset,
            which halves the memory of every feature map.
        backend: the device type the pass runs on (``"cpu"`` or ``"cuda"``), which sets the fitted overheads
            (:data:`BACKEND_MEMORY`).
    """

    geometry: UNetGeometry
    features: tuple[int, ...]
    in_channels: int = 1
    out_channels: int = 2
    bytes_per_value: int = 4
    backend: str = "cpu"

    def __post_init__(self) -> None:
        if len(self.features) != self.geometry.depth:
            raise ValueError(
                f"features {self.features} must have one entry per level of the geometry ({self.geometry.depth})"
            )
        if self.bytes_per_value < 1:
            raise ValueError(f"bytes_per_value must be >= 1, got {self.bytes_per_value}")
        if (self.backend, self.geometry.spatial_dims) not in BACKEND_MEMORY:
            raise ValueError(f"backend={self.backend!r} has no fitted memory model; valid backends are 'cpu', 'cuda'")

    @classmethod
    def for_network(
        cls,
        network: Any,
        dtype: torch.dtype | None = None,
        geometry: UNetGeometry | None = None,
        device: torch.device | str = "cpu",
    ) -> TileCostModel:
        """The model of a :class:`~medunet.networks.ValidUNet` (or anything with ``geometry``, ``features``,
        ``in_channels``, ``out_channels``) computing its activations in ``dtype`` (default float32;
        ``torch.float16`` under a half-precision preset) on ``device`` (CUDA, or the CPU's model for any other);
        ``geometry`` replaces the network's own."""
        import torch  # here: the planner's arithmetic runs without torch (medunet.runtime)

        return cls(
            network.geometry if geometry is None else geometry,
            tuple(int(f) for f in network.features),
            int(getattr(network, "in_channels", 1)),
            int(getattr(network, "out_channels", 2)),
            torch.empty((), dtype=dtype or torch.float32).element_size(),
            "cuda" if torch.device(device).type == "cuda" else "cpu",
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

    def live_values(self, input_tile: Sequence[int], batch_size: int = 1) -> int:
        """The most activation values alive at once during one pass over ``batch_size`` tiles (no autograd graph),
        following :meth:`medunet.networks.ValidUNet.forward` op by op as CPython holds its tensors: the caller's
        input tile for the whole pass; the skip connections from their level's pooling until the expanding path's
        next level (the cropped view of a popped skip keeps it alive until the next ``skip =``); each block's input
        for the whole block (the caller's variable, and an argument of a call lives until the call returns) and,
        inside a block, the previous convolution's output beside the current one's (ReLU works in place); in the
        expanding path the up-convolution's output (``x``) beside the concatenation while the level's
        convolutions run."""
        layers = self.geometry.layer_shapes(input_tile)
        tile_in = math.prod(input_tile) * self.in_channels
        skips: list[int] = []  # skips not yet concatenated
        popped = 0  # the skip concatenated at the current up level (alive until the next level's crop)
        peak = 0
        block_in, prev, up_out, x = tile_in, 0, 0, tile_in
        first = True  # the next convolution is the first of its block
        at_input = True  # the current block reads the caller's tile (counted once)
        in_shape, channels = tuple(input_tile), self.in_channels  # the current convolution's input
        for layer in layers:
            f = self.features[layer.level]
            out = math.prod(layer.spatial_shape) * f
            held = tile_in + sum(skips) + popped
            workspace = (
                self._columns(in_shape, channels, layer.spatial_shape, batch_size) if layer.kind == "conv" else 0
            )
            in_shape, channels = layer.spatial_shape, (2 * f if layer.kind == "upconv" else f)
            if layer.kind == "pool":
                peak = max(peak, held + x + out)
                skips.append(x)
                block_in, x, first, at_input = out, out, True, False
            elif layer.kind == "upconv":
                peak = max(peak, held + x + out)
                skip = skips.pop()  # alive through its cropped view; the previous level's skip is freed
                concatenated = 2 * out  # the cropped skip (f channels) and the up-convolution's output (f)
                peak = max(peak, tile_in + sum(skips) + skip + out + concatenated)
                popped, up_out, block_in, x, first = skip, out, concatenated, concatenated, True
            else:
                live = held + up_out + (0 if at_input else block_in) + out + (0 if first else prev)
                peak = max(peak, live + workspace)
                prev, x, first = out, out, False
        head = math.prod(layers[-1].spatial_shape) * self.out_channels
        peak = max(peak, tile_in + popped + up_out + block_in + x + head)  # the 1x1 head after the last block
        return peak * batch_size

    def _columns(self, in_shape: Sequence[int], channels: int, out_shape: Sequence[int], batch_size: int) -> int:
        """Values of the column (im2col) buffer of one convolution of a tile, for a batch of ``batch_size`` tiles:
        on the CPU, PyTorch runs a float convolution through oneDNN (no column buffer) unless one tile's ``C``
        times its first two spatial sizes is at most 20480 (its ``ConvParams::use_mkldnn`` for a batch of one,
        a 3x3 kernel, stride 1, one group), when its native kernels unfold the input into ``k * C`` values per output voxel of one tile
        (measured: the first 3D convolution of one channel on tiles up to 140 x 140 x D doubles the pass's peak)."""
        if self.backend != "cpu" or batch_size > 1 or channels * math.prod(in_shape[:2]) > 20480:
            return 0
        k = self.geometry.kernel_size**self.geometry.spatial_dims
        return k * channels * math.prod(out_shape)

    def peak_bytes(self, input_tile: Sequence[int], batch_size: int = 1) -> int:
        """Estimated peak memory of a pass over ``batch_size`` tiles (no autograd graph), in bytes: the live
        activations (:meth:`live_values`) times the backend's factor, plus its fixed bytes (:data:`BACKEND_MEMORY`).
        ``benchmarks/results/cost_model.md`` compares it with measured peaks."""
        factor, fixed = BACKEND_MEMORY[self.backend, self.geometry.spatial_dims]
        return int(factor * self.live_values(input_tile, batch_size) * self.bytes_per_value) + fixed
