"""Exact overlap-tile inference for valid-convolution networks."""

from medunet.inference.cost import TileCostModel
from medunet.inference.overlap_tile import OverlapTileInferer
from medunet.inference.tiling import TilePlan, plan_axis_starts, plan_tiles

__all__ = [
    "OverlapTileInferer",
    "TileCostModel",
    "TilePlan",
    "plan_axis_starts",
    "plan_tiles",
]
