"""Exact overlap-tile inference for valid-convolution networks.

Names are imported on first use (:mod:`medunet.utils.lazy`).
"""

from typing import TYPE_CHECKING

from medunet.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from medunet.inference.batch_norm import recalibrate_batch_norm
    from medunet.inference.cost import TileCostModel
    from medunet.inference.overlap_tile import NetworkCall, OverlapTileInferer, channel_argmax, scores_to_volume
    from medunet.inference.precision import (
        AutocastInferer,
        amp_default,
        amp_precision,
        autocast_dtype,
        channels_last_default,
        cpu_has_native_bf16,
        precision_dtype,
        to_channels_last,
    )
    from medunet.inference.streaming import predict_region, predict_to
    from medunet.inference.tiling import BlockGrid, TilePlan, flip_subsets, placement, plan_axis_starts, plan_tiles

__all__ = [
    "AutocastInferer",
    "BlockGrid",
    "NetworkCall",
    "OverlapTileInferer",
    "TileCostModel",
    "TilePlan",
    "amp_default",
    "amp_precision",
    "autocast_dtype",
    "channel_argmax",
    "channels_last_default",
    "cpu_has_native_bf16",
    "flip_subsets",
    "placement",
    "plan_axis_starts",
    "plan_tiles",
    "precision_dtype",
    "predict_region",
    "predict_to",
    "recalibrate_batch_norm",
    "scores_to_volume",
    "to_channels_last",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "recalibrate_batch_norm": "medunet.inference.batch_norm",
        "TileCostModel": "medunet.inference.cost",
        "NetworkCall": "medunet.inference.overlap_tile",
        "OverlapTileInferer": "medunet.inference.overlap_tile",
        "channel_argmax": "medunet.inference.overlap_tile",
        "scores_to_volume": "medunet.inference.overlap_tile",
        "AutocastInferer": "medunet.inference.precision",
        "amp_default": "medunet.inference.precision",
        "amp_precision": "medunet.inference.precision",
        "autocast_dtype": "medunet.inference.precision",
        "channels_last_default": "medunet.inference.precision",
        "cpu_has_native_bf16": "medunet.inference.precision",
        "precision_dtype": "medunet.inference.precision",
        "to_channels_last": "medunet.inference.precision",
        "predict_region": "medunet.inference.streaming",
        "predict_to": "medunet.inference.streaming",
        "BlockGrid": "medunet.inference.tiling",
        "flip_subsets": "medunet.inference.tiling",
        "TilePlan": "medunet.inference.tiling",
        "placement": "medunet.inference.tiling",
        "plan_axis_starts": "medunet.inference.tiling",
        "plan_tiles": "medunet.inference.tiling",
    },
)
