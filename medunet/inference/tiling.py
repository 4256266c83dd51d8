"""Pure tile arithmetic for exact overlap-tile inference (Ronneberger et al. 2015, Fig. 2).

A valid-convolution U-Net maps an input tile of size ``T`` to an output of size ``T - 2 m`` (``m`` the
per-side margin), and output voxel ``j`` of a tile starting at input position ``t`` is output voxel
``t + j`` of the whole (mirror-extended) image, *provided every max-pool of the tile sees the same
voxels as in the whole-image pass*. That holds exactly when ``t`` is a multiple of the pooling stride
``P`` (the product of the pooling sizes, 16 for the paper network). Tiles are therefore placed on that
grid; consecutive tiles overlap in their outputs by at most ``P - 1`` voxels plus what even spacing
needs, and overlapping outputs are identical, so no blending is needed.

MONAI's ``sliding_window_inference`` cannot be used: it assumes an output the size of its input
(or a rescaled one) and blends overlaps, which a valid-convolution network does not need and which
it would misplace. This module and :mod:`medunet.inference.overlap_tile` implement the paper's scheme.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from medunet.inference.cost import TileCostModel
from medunet.networks.geometry import UNetGeometry

__all__ = ["BlockGrid", "TilePlan", "flip_subsets", "placement", "plan_axis_starts", "plan_tiles"]


def plan_axis_starts(image_size: int, output_tile: int, stride: int) -> list[int]:
    """Output start positions of the tiles along one axis, all multiples of ``stride``.

    The tiles cover ``[0, image_size)``; their count is the smallest possible for tiles of output size
    ``output_tile`` on the ``stride`` grid, and they are spread evenly so the overlap is shared rather
    than piled onto the last tile.

    Raises:
        ValueError: if ``output_tile < stride`` while more than one tile is needed (aligned tiles would
            leave gaps).
    """
    if image_size < 1:
        raise ValueError(f"image size must be >= 1, got {image_size}")
    if output_tile >= image_size:
        return [0]
    if output_tile < stride:
        raise ValueError(
            f"output tile {output_tile} is smaller than the pooling stride {stride}; tiles on the pooling "
            "grid would leave gaps. Use a larger tile (input_tile / output_tile)."
        )
    last = math.ceil((image_size - output_tile) / stride) * stride  # smallest aligned start reaching the end
    step = (output_tile // stride) * stride  # largest aligned step with no gap
    gaps = math.ceil(last / step)
    # Even spacing on the grid: start_i = floor(i * last / gaps) rounded down to the grid; every gap is at
    # most ceil(last / gaps / stride) * stride <= step <= output_tile, so no output voxel is missed.
    return [((i * last) // gaps) // stride * stride for i in range(gaps)] + [last]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go.

    Attributes:
        image_shape: spatial shape of the image (and of the output).
        input_tile: spatial shape of every input tile (a valid network input).
        output_tile: spatial shape of every output tile (``input_tile - 2 * margin``).
        margin: per-axis margin (input voxels lost on each side).
        starts: per axis, the output start positions (image coordinates, multiples of the stride); the
            tile's input starts ``margin`` voxels earlier.
        stride: per-axis pooling stride, the grid the tiles start on.
    """

    image_shape: tuple[int, ...]
    input_tile: tuple[int, ...]
    output_tile: tuple[int, ...]
    margin: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    stride: tuple[int, ...]

    @property
    def num_tiles(self) -> int:
        return math.prod(len(s) for s in self.starts)

    def tile_starts(self) -> list[tuple[int, ...]]:
        """Output start of every tile, in C order."""
        return list(itertools.product(*self.starts))

    def default_block_shape(self) -> tuple[int, ...]:
        """The output block computed by one tile: the output tile rounded down to the pooling stride (at least one
        stride), and no larger than the image rounded up to the stride. Blocks of this shape, placed on the grid,
        each need one tile (streamed and blockwise inference)."""
        return tuple(
            min(max(o // p * p, p), math.ceil(s / p) * p)
            for o, p, s in zip(self.output_tile, self.stride, self.image_shape)
        )

    def region_starts(self, start: Sequence[int], size: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        """Per axis, the output starts of the tiles that compute the output region ``[start, start + size)``.

        The tiles are this plan's tile size placed on the pooling grid of the whole image (from the grid point at
        or below ``start``, spread as :func:`plan_axis_starts` spreads them), so every output voxel is computed
        from the same input at the same place in a tile of the same size as in the whole-image pass."""
        return tuple(
            tuple(a0 + t for t in plan_axis_starts(s + n - a0, o, p))
            for s, n, o, p in zip(start, size, self.output_tile, self.stride)
            for a0 in [s // p * p]
        )

    def context(self, starts: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The input context ``[low, high)`` (image coordinates, beyond the border where tiles reach over it) that
        tiles with the per-axis output ``starts`` read."""
        low = tuple(st[0] - m for st, m in zip(starts, self.margin))
        high = tuple(st[-1] - m + t for st, m, t in zip(starts, self.margin, self.input_tile))
        return low, high


def flip_subsets(flip_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``flip_axes`` (the flips of flip test-time augmentation), the empty one (no flip) first;
    the torch inferer and :mod:`medunet.runtime` average their predictions over these, in this order."""
    return [subset for k in range(len(flip_axes) + 1) for subset in itertools.combinations(flip_axes, k)]


def placement(
    tile_start: Sequence[int], output_tile: Sequence[int], region_start: Sequence[int], region_size: Sequence[int]
) -> tuple[list[slice], list[slice]]:
    """Where an output tile starting at ``tile_start`` lands in a region ``[region_start, + region_size)``: the
    destination slices in the region and the source slices in the tile (the tile clipped to the region)."""
    dst, src = [], []
    for t, o, r, n in zip(tile_start, output_tile, region_start, region_size):
        a, b = max(t, r), min(t + o, r + n)
        dst.append(slice(a - r, b - r))
        src.append(slice(a - t, b - t))
    return dst, src


@dataclass(frozen=True)
class BlockGrid:
    """An image cut into blocks of ``block_shape`` from its first voxel (the last blocks clipped to the image): the
    units of streamed and blockwise inference and of blockwise instance labelling."""

    image_shape: tuple[int, ...]
    block_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.block_shape) != len(self.image_shape) or min(self.block_shape, default=1) < 1:
            raise ValueError(
                f"block shape {tuple(self.block_shape)} needs one positive entry per axis of the image "
                f"{tuple(self.image_shape)}"
            )

    def blocks(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(start, size)`` of every block, in C order."""
        ranges = [range(0, s, b) for s, b in zip(self.image_shape, self.block_shape)]
        return [
            (start, tuple(min(b, s - i) for i, b, s in zip(start, self.block_shape, self.image_shape)))
            for start in itertools.product(*ranges)
        ]

    def __len__(self) -> int:
        return math.prod(-(-s // b) for s, b in zip(self.image_shape, self.block_shape))

    @staticmethod
    def slices(start: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
        """The index of the block ``[start, start + size)``."""
        return tuple(slice(s, s + n) for s, n in zip(start, size))


def _whole_image_tile(geometry: UNetGeometry, image_shape: Sequence[int]) -> tuple[int, ...]:
    return geometry.input_shape_for(image_shape)


def plan_tiles(
    geometry: UNetGeometry,
    image_shape: Sequence[int],
    input_tile: Sequence[int] | None = None,
    cost: TileCostModel | None = None,
    memory_budget: int | None = None,
    batch_size: int = 1,
) -> TilePlan:
    """Chooses the input tile size and the tile positions for one image.

    With ``input_tile`` given, that tile is used (clamped to what covers the whole image; non-positive
    entries mean "the whole image along that axis"). Otherwise the planner picks, among the valid tile
    sizes whose peak memory (by ``cost``, for ``batch_size`` tiles) fits ``memory_budget`` bytes, the one with
    the least total arithmetic (tiles x multiply-accumulates per tile), preferring larger tiles on ties; with
    no budget or no cost model the whole image is one tile.

    Raises:
        ValueError: an invalid ``input_tile`` (with the nearest valid sizes), or a budget too small for the
            smallest usable tile.
    """
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != geometry.spatial_dims or min(image_shape) < 1:
        raise ValueError(f"image spatial shape {image_shape} does not fit a {geometry.spatial_dims}D network")
    if cost is not None and cost.geometry != geometry:
        raise ValueError("the cost model describes another geometry than the one to plan for")
    whole = _whole_image_tile(geometry, image_shape)
    margin = geometry.margin

    if input_tile is not None:
        wanted = tuple(int(r) for r in input_tile)
        if len(wanted) != geometry.spatial_dims:
            raise ValueError(f"input_tile {wanted} must have {geometry.spatial_dims} entries")
        wanted = tuple(w if r <= 0 else r for r, w in zip(wanted, whole))
        bad = [(d, r) for d, (r, a) in enumerate(zip(wanted, geometry.axes)) if not a.is_valid(r)]
        if bad:
            details = "; ".join(f"axis {d}: {geometry.axes[d].invalid_message(r)}" for d, r in bad)
            raise ValueError(f"input_tile {wanted} is not a valid input tile for this network: {details}")
        tile = tuple(min(r, w) for r, w in zip(wanted, whole))
    elif memory_budget is None or cost is None:
        tile = whole
    else:
        tile = _best_tile(cost, image_shape, memory_budget, batch_size)
    out = tuple(t - 2 * m for t, m in zip(tile, margin))
    starts = tuple(tuple(plan_axis_starts(s, o, p)) for s, o, p in zip(image_shape, out, geometry.stride))
    return TilePlan(image_shape, tile, out, margin, starts, geometry.stride)


def _best_tile(
    cost: TileCostModel, image_shape: tuple[int, ...], memory_budget: int, batch_size: int
) -> tuple[int, ...]:
    geometry = cost.geometry
    whole = _whole_image_tile(geometry, image_shape)
    candidates = []
    for d, axis in enumerate(geometry.axes):
        # Tiles must produce at least one stride of output to be placed on the grid without gaps,
        # unless a single tile covers the axis.
        smallest = axis.input_size_for(min(axis.stride, image_shape[d]))
        # A larger tile with the same tile count along an axis costs more arithmetic and memory for nothing:
        # keep only the smallest tile for each count.
        by_count: dict[int, int] = {}
        for t in axis.valid_sizes(whole[d], smallest):
            count = len(plan_axis_starts(image_shape[d], t - 2 * axis.margin, axis.stride))
            by_count.setdefault(count, t)
        candidates.append(sorted(by_count.values()))

    best: tuple[int, ...] | None = None
    best_key: tuple[int, int] | None = None
    for tile in itertools.product(*candidates):
        if cost.peak_bytes(tile, batch_size) > memory_budget:
            continue
        n = math.prod(
            len(plan_axis_starts(s, t - 2 * m, p))
            for s, t, m, p in zip(image_shape, tile, geometry.margin, geometry.stride)
        )
        key = (n * cost.macs(tile), -math.prod(tile))
        if best_key is None or key < best_key:
            best, best_key = tile, key
    if best is None:
        smallest_tile = tuple(c[0] for c in candidates)
        raise ValueError(
            f"memory_budget={memory_budget} bytes is too small: the smallest usable tile {smallest_tile} needs about "
            f"{cost.peak_bytes(smallest_tile, batch_size)} bytes for sw_batch_size={batch_size}. Raise memory_budget "
            "or lower sw_batch_size."
        )
    return best
