"""The tile cost model: arithmetic counted against a real pass, memory scaling with tile and dtype."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medunet.inference import TileCostModel
from medunet.inference.cost import ALLOCATOR_SLACK, BACKEND_COPIES
from medunet.networks import UNetGeometry, ValidUNet


def counted_macs(net: nn.Module, tile: tuple[int, ...]) -> int:
    """Multiply-accumulates of the convolutions of a real forward pass, counted with hooks."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel = math.prod(module.kernel_size)  # type: ignore[arg-type]
        if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
            # each input voxel scatters one kernel per output channel
            total += inputs[0].numel() * module.out_channels * kernel
        else:
            total += output.numel() * module.in_channels * kernel

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    ]
    with torch.inference_mode():
        net(torch.zeros(1, net.in_channels, *tile))  # type: ignore[attr-defined]
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(
    ("dims", "features", "pools", "tile"),
    [
        (2, (4, 8, 16), None, (60, 76)),
        (3, (2, 4, 8), None, (44, 52, 60)),
        (3, (2, 4, 8), ((2, 2, 1), (2, 2, 1)), (44, 44, 23)),
    ],
)
def test_macs_equal_a_counted_forward_pass(
    dims: int, features: tuple[int, ...], pools: object, tile: tuple[int, ...]
) -> None:
    net = ValidUNet(dims, 2, 3, features=features, pool_sizes=pools).eval()  # type: ignore[arg-type]
    cost = TileCostModel.for_network(net)
    assert cost.macs(tile) == counted_macs(net, tile)
    assert cost.flops(tile) == 2 * cost.macs(tile)


def test_peak_bytes_follow_dtype_batch_and_tile() -> None:
    net = ValidUNet(2, 1, 2, features=(16, 32, 64, 128, 256))
    fp32 = TileCostModel.for_network(net)
    fp16 = TileCostModel.for_network(net, torch.float16)
    tile = (572, 572)
    assert fp32.bytes_per_value == 4
    assert fp16.bytes_per_value == 2
    assert abs(fp16.peak_bytes(tile) - fp32.peak_bytes(tile) / 2) <= 1
    assert abs(fp32.peak_bytes(tile, batch_size=3) - 3 * fp32.peak_bytes(tile)) <= 3
    assert fp32.peak_bytes((700, 700)) > fp32.peak_bytes(tile)
    # the first feature map pair alone, times the named constants, bounds the estimate from below
    first_pair = (570 * 570 + 568 * 568) * 16
    assert fp32.peak_bytes(tile) >= ALLOCATOR_SLACK * BACKEND_COPIES * first_pair * 4


def test_model_rejects_inconsistent_settings() -> None:
    geometry = UNetGeometry.create(2, 3)
    with pytest.raises(ValueError, match="one entry per level"):
        TileCostModel(geometry, (8, 16))
    with pytest.raises(ValueError, match="bytes_per_value"):
        TileCostModel(geometry, (8, 16, 32), bytes_per_value=0)
