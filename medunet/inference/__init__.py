"""Exact overlap-tile inference for valid-convolution networks."""

from medunet.inference.overlap_tile import OverlapTileInferer, extension_indices
from medunet.inference.tiling import TilePlan, plan_axis_starts, plan_tiles, unet_flops, unet_memory_bytes

__all__ = [
    "OverlapTileInferer",
    "TilePlan",
    "extension_indices",
    "plan_axis_starts",
    "plan_tiles",
    "unet_flops",
    "unet_memory_bytes",
]
