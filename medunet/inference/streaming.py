"""Overlap-tile inference of images that are not in memory: one output region at a time, or a whole volume streamed
block by block into an array on disk.

A region is computed by the tiles of the *whole image's* tile plan that cover it, placed on the whole image's
pooling grid (:meth:`TilePlan.region_starts`), from the region's input context only (mirrored beyond the image
border as the in-memory inferer mirrors). So every output voxel comes from the same input at the same place in a
tile of the same size, and a region is **bit-identical** to the same region of
:class:`~medunet.inference.OverlapTileInferer` on the whole image (float32). Regions can therefore be computed
separately, in any order, in any process: :mod:`medunet.apps.blockwise` runs them as dask tasks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from medunet.inference.overlap_tile import NetworkCall, OverlapTileInferer
from medunet.inference.tiling import BlockGrid, TilePlan, placement
from medunet.utils.regions import read_region

__all__ = ["predict_region", "predict_to"]


def predict_region(
    inferer: OverlapTileInferer,
    source: Any,
    start: Sequence[int],
    size: Sequence[int],
    network: Callable[..., torch.Tensor],
    image_shape: Sequence[int] | None = None,
    plan: TilePlan | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    sw_device: torch.device | str | None = None,
) -> torch.Tensor:
    """The inferer's output on the region ``[start, start + size)`` of an image that need not be in memory.

    Only the region's input context is read from ``source`` (a zarr array, a memmap, a NumPy array).

    Args:
        inferer: its tile size, padding, flips, output kind, precision and memory format are used.
        source: the image without batch axis, ``(C, *S)``.
        start, size: the output region (spatial voxels).
        image_shape: ``S`` (default: read from ``source``).
        plan: the whole image's tile plan (default: ``inferer.plan(S, network)``, so the same tile size).
        transform: applied to every block read from ``source`` before the network (voxel-wise intensity
            scaling; it must not depend on the block, e.g. no per-block statistics). Default: float32.
        sw_device: device the network runs on (default: the inferer's, else the CPU).

    Returns:
        ``(C_out, *size)`` float32 on the CPU: logits, or probabilities with ``output="probabilities"``
        (averaged over flips as the inferer does).
    """
    geometry, _ = inferer.network_geometry(network)
    shape = tuple(int(s) for s in (image_shape or source.shape[1:]))
    start, size = tuple(int(s) for s in start), tuple(int(s) for s in size)
    if len(shape) != geometry.spatial_dims or len(start) != len(shape) or len(size) != len(shape):
        raise ValueError(
            f"region start {start} / size {size} and image shape {shape} must have one entry per spatial axis of "
            f"the {geometry.spatial_dims}D network"
        )
    if any(s < 0 or n < 1 or s + n > d for s, n, d in zip(start, size, shape)):
        raise ValueError(f"region start {start}, size {size} is not inside the image of shape {shape}")
    device = inferer.network_device(sw_device)
    plan = plan or inferer.plan(shape, network, device)
    call = NetworkCall(network, device, torch.device("cpu"), inferer.autocast_type(device))
    to_float = transform or (lambda block: block.astype(np.float32))

    def flipped(flip: tuple[int, ...]) -> torch.Tensor:
        # The region in the flipped image's coordinates, whose pooling grid starts at its own first voxel.
        f_start = tuple(d - s - n if a in flip else s for a, (s, n, d) in enumerate(zip(start, size, shape)))
        starts = plan.region_starts(f_start, size)
        low, high = plan.context(starts)
        # Read the context once, in the source's orientation, then flip it (mirror extension commutes with
        # flipping: the flipped image's extension is the flipped extension).
        o_low = [d - h if a in flip else lo for a, (lo, h, d) in enumerate(zip(low, high, shape))]
        extent = [h - lo for h, lo in zip(high, low)]
        context = torch.from_numpy(
            np.ascontiguousarray(to_float(read_region(source, o_low, extent, inferer.padding_mode)))
        )
        if flip:
            context = context.flip([a + 1 for a in flip])
        out: list[torch.Tensor] = []

        def read(tile_start: tuple[int, ...]) -> torch.Tensor:
            index = tuple(
                slice(s - m - lo, s - m - lo + t) for s, m, lo, t in zip(tile_start, plan.margin, low, plan.input_tile)
            )
            return context[(slice(None), *index)]

        def write(tile_start: tuple[int, ...], tile_out: torch.Tensor) -> None:
            if not out:
                out.append(torch.empty((tile_out.shape[0], *size), dtype=torch.float32))
            dst, src = placement(tile_start, plan.output_tile, f_start, size)
            out[0][(slice(None), *dst)] = tile_out[(slice(None), *src)]

        inferer.run_tiles(list(itertools.product(*starts)), read, write, call)
        return out[0].flip([a + 1 for a in flip]) if flip else out[0]

    with torch.inference_mode():
        return inferer.over_flips(flipped)


def predict_to(
    inferer: OverlapTileInferer,
    source: Any,
    destination: Any,
    network: Callable[..., torch.Tensor],
    block_shape: Sequence[int] | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    convert: Callable[[torch.Tensor], np.ndarray] | None = None,
    sw_device: torch.device | str | None = None,
) -> Any:
    """Streams the inferer's output on a whole image into ``destination``, block by block (one process).

    Each block's input context is read from ``source`` (``(C, *S)``: a zarr array, memmap or NumPy array) and its
    result written into its disjoint region of ``destination`` (a NumPy memmap, a zarr array; indexed
    ``destination[..., *block]``, so ``(C_out, *S)`` for scores or ``(*S)`` for labels). Peak memory is one
    block's input context and scores plus the tile plan's budget, whatever the image's size. The result is
    bit-identical to the in-memory inferer (see :func:`predict_region`).

    Args:
        block_shape: output block (default: :meth:`TilePlan.default_block_shape`, one tile each).
        convert: maps a block's ``(C_out, *block)`` float32 scores to what is stored, e.g.
            :func:`~medunet.inference.scores_to_volume` for labels (default: the scores in the destination's dtype).

    Returns:
        ``destination``.
    """
    shape = tuple(int(s) for s in source.shape[1:])
    device = inferer.network_device(sw_device)
    plan = inferer.plan(shape, network, device)
    grid = BlockGrid(shape, tuple(block_shape) if block_shape else plan.default_block_shape())
    dtype = np.dtype(destination.dtype)
    to_array = convert or (lambda scores: scores.numpy().astype(dtype, copy=False))
    for start, size in grid.blocks():
        scores = predict_region(inferer, source, start, size, network, shape, plan, transform, device)
        destination[(Ellipsis, *grid.slices(start, size))] = to_array(scores)
    return destination
