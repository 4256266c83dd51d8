"""Exact overlap-tile inference for valid-convolution networks."""

from medunet.inference.batch_norm import recalibrate_batch_norm
from medunet.inference.cost import TileCostModel
from medunet.inference.overlap_tile import NetworkCall, OverlapTileInferer, channel_argmax, scores_to_volume
from medunet.inference.precision import (
    AutocastInferer,
    amp_default,
    autocast_dtype,
    channels_last_default,
    cpu_has_native_bf16,
    to_channels_last,
)
from medunet.inference.streaming import predict_region, predict_to
from medunet.inference.tiling import BlockGrid, TilePlan, placement, plan_axis_starts, plan_tiles

__all__ = [
    "AutocastInferer",
    "BlockGrid",
    "NetworkCall",
    "OverlapTileInferer",
    "TileCostModel",
    "TilePlan",
    "amp_default",
    "autocast_dtype",
    "channel_argmax",
    "channels_last_default",
    "cpu_has_native_bf16",
    "placement",
    "plan_axis_starts",
    "plan_tiles",
    "predict_region",
    "predict_to",
    "recalibrate_batch_norm",
    "scores_to_volume",
    "to_channels_last",
]
