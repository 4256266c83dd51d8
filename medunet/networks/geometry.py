"""Size arithmetic of the valid-convolution U-Net: the single source of truth for shapes.

Every 3x3 (x3) convolution of the original U-Net (Ronneberger et al. 2015, section 2) is unpadded,
so each one removes ``kernel_size - 1`` voxels along every axis. A level of the contracting path
is ``convs_per_level`` such convolutions followed by a max-pool of size ``p`` (2 in the paper),
which needs an input size divisible by ``p``; the expanding path mirrors it with a transposed
convolution of size and stride ``p`` followed by the same convolutions.

Along one axis the whole network is therefore an affine map of the bottleneck size ``b``::

    input  = P * b + c_in        (P = product of the pooling sizes along that axis)
    output = P * b - c_out

so the valid input sizes form the arithmetic sequence ``P * k + c_in`` and the output is always
``input - 2 * margin`` with a fixed per-side ``margin = (c_in + c_out) / 2``. For the paper's 2D
network (5 levels, pooling 2): ``P = 16``, ``c_in = 124``, ``margin = 92``; 572 -> 388.

Everything here is a pure function of a :class:`UNetGeometry`; the network, the overlap-tile
inferer, the tile planner and the bundle metadata all call it rather than re-deriving sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from medunet.utils.values import positive_int, positive_ints

__all__ = [
    "AxisGeometry",
    "LayerShape",
    "UNetGeometry",
    "normalize_pool_sizes",
]


@dataclass(frozen=True)
class AxisGeometry:
    """The valid-convolution U-Net along one spatial axis.

    Attributes:
        pools: pooling size of each level transition along this axis (``depth - 1`` entries).
        conv_loss: voxels removed by the convolutions of one level (``convs_per_level * (kernel_size - 1)``).
    """

    pools: tuple[int, ...]
    conv_loss: int = 4

    @property
    def stride(self) -> int:
        """Product of the pooling sizes: the grid on which tiles must start for exact tiling."""
        return math.prod(self.pools)

    def _input_for_bottleneck(self, b: int) -> int:
        size = b + self.conv_loss
        for p in reversed(self.pools):
            size = size * p + self.conv_loss
        return size

    def _output_for_bottleneck(self, b: int) -> int | None:
        """Output size for bottleneck size ``b`` (after its convolutions), or None if a layer would be empty."""
        size = b
        for p in reversed(self.pools):
            size = size * p - self.conv_loss
            if size < 1:
                return None
        return size

    @property
    def min_bottleneck(self) -> int:
        """Smallest bottleneck size whose expanding path keeps every feature map non-empty."""
        b = 1
        while self._output_for_bottleneck(b) is None:
            b += 1
        return b

    @property
    def input_offset(self) -> int:
        """``c_in``: valid input sizes are ``stride * k + input_offset`` for ``k >= min_bottleneck``."""
        return self._input_for_bottleneck(0)

    @property
    def margin(self) -> int:
        """Voxels lost on each side: ``(input - output) / 2``, the same for every valid input."""
        b = self.min_bottleneck
        out = self._output_for_bottleneck(b)
        assert out is not None  # min_bottleneck guarantees it
        lost = self._input_for_bottleneck(b) - out
        # Every loss is a multiple of conv_loss times pooling products; for even conv_loss
        # (the paper's 3x3 kernels) the total is even and the centre crops are symmetric.
        return lost // 2

    @property
    def min_input(self) -> int:
        return self._input_for_bottleneck(self.min_bottleneck)

    def bottleneck_for_input(self, size: int) -> int | None:
        """The bottleneck size for a valid input size, None when ``size`` is not valid."""
        k, rem = divmod(size - self.input_offset, self.stride)
        if rem != 0 or k < self.min_bottleneck:
            return None
        return k

    def is_valid(self, size: int) -> bool:
        return self.bottleneck_for_input(size) is not None

    def output_for(self, size: int) -> int:
        """The output size of a valid input size (``size - 2 * margin``)."""
        if not self.is_valid(size):
            raise ValueError(self.invalid_message(size))
        return size - 2 * self.margin

    def input_size_for(self, output: int) -> int:
        """Smallest valid input size whose output is at least ``output`` (>= 1)."""
        if output < 1:
            raise ValueError(f"output size must be >= 1, got {output}")
        needed = output + 2 * self.margin
        return self.nearest_valid(needed)[1]

    def nearest_valid(self, size: int) -> tuple[int | None, int]:
        """The largest valid size ``<= size`` (None if there is none) and the smallest valid size ``>= size``."""
        k_low = (size - self.input_offset) // self.stride
        k_high = -((self.input_offset - size) // self.stride)  # ceil division
        k_high = max(k_high, self.min_bottleneck)
        low = self.stride * k_low + self.input_offset if k_low >= self.min_bottleneck else None
        return low, self.stride * k_high + self.input_offset

    def valid_sizes(self, max_size: int, min_size: int = 1) -> list[int]:
        """All valid input sizes in ``[min_size, max_size]``, increasing."""
        start = self.nearest_valid(min_size)[1]
        return list(range(start, max_size + 1, self.stride))

    def invalid_message(self, size: int) -> str:
        low, high = self.nearest_valid(size)
        nearest = f"{low} and {high}" if low is not None and low != high else f"{high}"
        return (
            f"size {size} is not valid; nearest valid input sizes are {nearest} "
            f"(valid sizes are {self.stride}*k + {self.input_offset} for k >= {self.min_bottleneck})"
        )


class LayerShape(NamedTuple):
    """Output of one layer: ``kind`` is ``"conv"``, ``"upconv"`` or ``"pool"``; ``path`` ``"down"`` or ``"up"``."""

    path: str
    level: int
    kind: str
    spatial_shape: tuple[int, ...]


def normalize_pool_sizes(
    pool_sizes: Sequence[int | Sequence[int]] | None, depth: int, spatial_dims: int
) -> tuple[tuple[int, ...], ...]:
    """Per-level pooling sizes as a ``(depth - 1) x spatial_dims`` tuple; ``None`` means 2 everywhere.

    Each entry may be an int (isotropic) or one int per spatial axis, e.g. ``(2, 2, 1)`` to keep the
    slice axis of a thick-slice volume unpooled at that level.
    """
    if depth < 1:
        raise ValueError(f"depth (len(features)) must be >= 1, got {depth}")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    if pool_sizes is None:
        return tuple((2,) * spatial_dims for _ in range(depth - 1))
    if not isinstance(pool_sizes, (list, tuple)) or len(pool_sizes) != depth - 1:
        raise ValueError(
            f"pool_sizes must have one entry per level transition (len(features) - 1 = {depth - 1}), "
            f"got {pool_sizes!r}; e.g. {tuple([2] * (depth - 1))}"
        )
    levels = []
    for i, p in enumerate(pool_sizes):
        name = f"pool_sizes[{i}]"
        per_axis = (
            (positive_int(p, name),) * spatial_dims
            if isinstance(p, (int, float))
            else positive_ints(p, name, str([2] * spatial_dims))
        )
        if len(per_axis) != spatial_dims:
            raise ValueError(f"{name} = {p!r} must be a positive int or {spatial_dims} positive ints")
        levels.append(per_axis)
    return tuple(levels)


@dataclass(frozen=True)
class UNetGeometry:
    """Sizes of a valid-convolution U-Net with ``len(pool_sizes) + 1`` levels.

    Attributes:
        pool_sizes: ``(depth - 1) x spatial_dims`` pooling sizes (see :func:`normalize_pool_sizes`).
        kernel_size: convolution kernel size (3 in the paper).
        convs_per_level: unpadded convolutions per level and path (2 in the paper).
    """

    pool_sizes: tuple[tuple[int, ...], ...]
    spatial_dims: int = 2
    kernel_size: int = 3
    convs_per_level: int = 2

    def __post_init__(self) -> None:
        if any(len(p) != self.spatial_dims for p in self.pool_sizes):
            raise ValueError(f"every pool size must have {self.spatial_dims} entries, got {self.pool_sizes}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")

    @classmethod
    def create(
        cls,
        spatial_dims: int = 2,
        depth: int = 5,
        pool_sizes: Sequence[int | Sequence[int]] | None = None,
        kernel_size: int = 3,
        convs_per_level: int = 2,
    ) -> UNetGeometry:
        return cls(normalize_pool_sizes(pool_sizes, depth, spatial_dims), spatial_dims, kernel_size, convs_per_level)

    @property
    def depth(self) -> int:
        return len(self.pool_sizes) + 1

    @property
    def axes(self) -> tuple[AxisGeometry, ...]:
        loss = self.convs_per_level * (self.kernel_size - 1)
        return tuple(AxisGeometry(tuple(level[d] for level in self.pool_sizes), loss) for d in range(self.spatial_dims))

    @property
    def stride(self) -> tuple[int, ...]:
        """Per-axis product of the pooling sizes: the pooling grid tiles must start on."""
        return tuple(a.stride for a in self.axes)

    @property
    def margin(self) -> tuple[int, ...]:
        """Per-axis voxels lost on each side (92 for the paper's 2D network)."""
        return tuple(a.margin for a in self.axes)

    @property
    def min_input_shape(self) -> tuple[int, ...]:
        return tuple(a.min_input for a in self.axes)

    def _check_rank(self, shape: Sequence[int], what: str) -> tuple[int, ...]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != self.spatial_dims:
            raise ValueError(f"{what} {shape} has {len(shape)} spatial dimensions, the network has {self.spatial_dims}")
        return shape

    def is_valid_input_shape(self, input_shape: Sequence[int]) -> bool:
        """True when every max-pool sees a size divisible by its pooling size and no map is empty."""
        shape = self._check_rank(input_shape, "input shape")
        return all(a.is_valid(s) for a, s in zip(self.axes, shape))

    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Returns the shape as a tuple, or raises ``ValueError`` naming the nearest valid sizes per axis."""
        shape = self._check_rank(input_shape, "input shape")
        problems = [
            f"axis {d}: {a.invalid_message(s)}" for d, (a, s) in enumerate(zip(self.axes, shape)) if not a.is_valid(s)
        ]
        if problems:
            raise ValueError(
                f"input spatial shape {shape} is not valid for this valid-convolution U-Net; "
                + "; ".join(problems)
                + ". Crop or pad the input to valid sizes (ValidUNet.input_shape_for gives the smallest one for an "
                "output size), or use medunet.inference.OverlapTileInferer for images of any size."
            )
        return shape

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a valid input shape (572x572 -> 388x388 for the paper network)."""
        shape = self.check_input_shape(input_shape)
        return tuple(s - 2 * m for s, m in zip(shape, self.margin))

    def input_shape_for(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """Smallest valid input shape whose output covers at least ``output_shape``."""
        shape = self._check_rank(output_shape, "output shape")
        return tuple(a.input_size_for(s) for a, s in zip(self.axes, shape))

    def input_tile_for(self, output_tile: Sequence[int], name: str = "output_tile") -> tuple[int, ...]:
        """The input tile whose output is exactly ``output_tile``; ``ValueError`` naming the nearest output tiles
        the network can produce when it produces no such tile (an output tile is never silently rounded)."""
        tile = tuple(int(s) for s in output_tile)
        if len(tile) != self.spatial_dims:
            raise ValueError(f"{name}={list(tile)} has {len(tile)} axes, the network has {self.spatial_dims}")
        problems = []
        for d, (axis, size) in enumerate(zip(self.axes, tile)):
            if not axis.is_valid(size + 2 * axis.margin):
                low, high = axis.nearest_valid(size + 2 * axis.margin)
                sizes = [s - 2 * axis.margin for s in (low, high) if s is not None and s - 2 * axis.margin >= 1]
                problems.append(f"axis {d}: {size} (nearest valid: {' and '.join(map(str, sizes))})")
        if problems:
            raise ValueError(
                f"{name}={list(tile)} is not an output tile of this network ({'; '.join(problems)}); valid output "
                f"sizes are input sizes less {[2 * m for m in self.margin]}, spaced by the pooling strides {self.stride}"
            )
        return tuple(s + 2 * m for s, m in zip(tile, self.margin))

    def nearest_valid_input_shapes(self, input_shape: Sequence[int]) -> tuple[tuple[int | None, ...], tuple[int, ...]]:
        """Per axis, the largest valid size ``<=`` and the smallest valid size ``>=`` the given one."""
        shape = self._check_rank(input_shape, "input shape")
        pairs = [a.nearest_valid(s) for a, s in zip(self.axes, shape)]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    def valid_input_sizes(self, axis: int, max_size: int, min_size: int = 1) -> list[int]:
        """The valid input sizes along ``axis`` within ``[min_size, max_size]``."""
        return self.axes[axis].valid_sizes(max_size, min_size)

    def layer_shapes(self, input_shape: Sequence[int]) -> list[LayerShape]:
        """Spatial output shape of every layer for a valid input, in execution order.

        Used for FLOP and memory estimates (the tile planner); the final 1x1 convolution keeps the
        shape of the last ``"up"`` convolution.
        """
        shape = self.check_input_shape(input_shape)
        step = self.kernel_size - 1
        layers: list[LayerShape] = []
        for level in range(self.depth):
            for _ in range(self.convs_per_level):
                shape = tuple(s - step for s in shape)
                layers.append(LayerShape("down", level, "conv", shape))
            if level < self.depth - 1:
                shape = tuple(s // p for s, p in zip(shape, self.pool_sizes[level]))
                layers.append(LayerShape("down", level, "pool", shape))
        for level in reversed(range(self.depth - 1)):
            shape = tuple(s * p for s, p in zip(shape, self.pool_sizes[level]))
            layers.append(LayerShape("up", level, "upconv", shape))
            for _ in range(self.convs_per_level):
                shape = tuple(s - step for s in shape)
                layers.append(LayerShape("up", level, "conv", shape))
        return layers
