"""The tile cost model: arithmetic counted against a real pass, memory scaling with tile and dtype."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medunet.inference import TileCostModel
from medunet.inference.cost import BACKEND_MEMORY
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
    fixed = BACKEND_MEMORY["cpu", 2][1]
    assert abs((fp16.peak_bytes(tile) - fixed) - (fp32.peak_bytes(tile) - fixed) / 2) <= 1
    assert abs((fp32.peak_bytes(tile, batch_size=3) - fixed) - 3 * (fp32.peak_bytes(tile) - fixed)) <= 3
    assert fp32.peak_bytes((700, 700)) > fp32.peak_bytes(tile)
    # the input and the first block's two feature maps are alive together (the block's input is held by the caller)
    first_block = 572 * 572 + (570 * 570 + 568 * 568) * 16
    assert fp32.live_values(tile) >= first_block
    assert fp32.live_values(tile) < 3 * first_block  # the first level dominates in 2D: skips below it are small
    factor, fixed = BACKEND_MEMORY["cpu", 2]
    assert fp32.peak_bytes(tile) == int(factor * fp32.live_values(tile) * 4) + fixed
    cuda = TileCostModel.for_network(net, device="cuda:0")
    assert cuda.backend == "cuda"
    assert cuda.live_values(tile) == fp32.live_values(tile)
    with pytest.raises(ValueError, match="backend='tpu' has no fitted memory model"):
        TileCostModel(net.geometry, net.features, backend="tpu")


def test_model_rejects_inconsistent_settings() -> None:
    geometry = UNetGeometry.create(2, 3)
    with pytest.raises(ValueError, match="one entry per level"):
        TileCostModel(geometry, (8, 16))
    with pytest.raises(ValueError, match="bytes_per_value"):
        TileCostModel(geometry, (8, 16, 32), bytes_per_value=0)


def test_cpu_column_buffer_of_pytorchs_native_convolution() -> None:
    """On the CPU a convolution whose N * C * (first two spatial sizes) is at most 20480 runs PyTorch's native
    kernel, which unfolds its input (27 values per input channel and output voxel in 3D); oneDNN does not."""
    import torch

    net = ValidUNet(3, 1, 2, features=(8, 16, 32, 64))
    cpu, cuda = TileCostModel.for_network(net), TileCostModel.for_network(net, device="cuda")
    small, large = (92, 92, 92), (156, 156, 156)
    probe = torch.empty(1, 1, *small).contiguous(memory_format=torch.channels_last_3d)
    weight = torch.empty(8, 1, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d)
    args = (None, [1, 1, 1], [0, 0, 0], [1, 1, 1], False, [0, 0, 0], 1, None)
    assert "Slow3d" in str(torch._C._select_conv_backend(probe, weight, *args))  # the rule the model follows
    first_conv = 3 * 92**3 // 3 + 8 * 90**3 + 27 * 90**3  # the tile, its output and the columns
    assert cpu.live_values(small) >= first_conv
    assert cpu.live_values(small) - cuda.live_values(small) > 8 * 90**3  # the columns dominate this tile
    assert cpu.live_values(large) == cuda.live_values(large)  # 156 * 156 > 20480: oneDNN, no columns
    assert cpu.live_values(small, batch_size=2) == cuda.live_values(small, batch_size=2)  # N = 2: oneDNN
