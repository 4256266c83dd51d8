"""ValidUNet: the paper's architecture, shapes that agree with the geometry, errors, training step."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from medunet.networks import ValidUNet


def count_conv_layers(net: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.conv._ConvNd) for m in net.modules())


def expected_parameters(in_ch: int, out_ch: int, features: tuple[int, ...], dims: int) -> int:
    """Parameter count from the layer shapes of Fig. 1 (weights + biases), computed independently."""
    k3, k2 = 3**dims, 2**dims
    total, ch = 0, in_ch
    for f in features:  # contracting path: two 3x3 convolutions per level
        total += (ch * k3 + 1) * f + (f * k3 + 1) * f
        ch = f
    for lo, hi in zip(reversed(features[:-1]), reversed(features[1:])):
        total += hi * lo * k2 + lo  # 2x2 up-convolution halving channels
        total += (2 * lo * k3 + 1) * lo + (lo * k3 + 1) * lo  # two 3x3 convolutions after concatenation
    return total + (features[0] + 1) * out_ch  # 1x1 output convolution


def test_paper_network_2d() -> None:
    net = ValidUNet()
    assert count_conv_layers(net) == 23
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == expected_parameters(1, 2, (64, 128, 256, 512, 1024), 2)
    assert 30.9e6 < n_params < 31.1e6
    assert net.output_shape((572, 572)) == (388, 388)
    net.eval()
    with torch.inference_mode():
        out = net(torch.randn(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


def test_3d_unet_cicek_geometry_and_forward() -> None:
    net = ValidUNet(3, in_channels=3, out_channels=3, features=(32, 64, 128, 256), norm="batch")
    assert net.output_shape((132, 132, 116)) == (44, 44, 28)
    assert any(isinstance(m, nn.BatchNorm3d) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) > 0
    # A small network with the same depth and pooling runs the paper's input size quickly.
    small = ValidUNet(3, in_channels=3, out_channels=3, features=(2, 4, 4, 8), norm="batch").eval()
    with torch.inference_mode():
        assert small(torch.randn(1, 3, 132, 132, 116)).shape == (1, 3, 44, 44, 28)


def _random_valid_shape(net: ValidUNet, rng: random.Random) -> tuple[int, ...]:
    return tuple(
        rng.choice(net.geometry.valid_input_sizes(d, a.min_input + 6 * a.stride))
        for d, a in enumerate(net.geometry.axes)
    )


CASES = [
    (2, (4, 8, 16), None),
    (2, (4, 8, 8, 16), ((2, 1), (2, 2), (1, 2))),
    (2, (4,), None),
    (3, (2, 4, 8), ((2, 2, 1), (2, 2, 2))),
    (3, (2, 4, 4, 8), ((2, 2, 1), (2, 2, 1), (2, 2, 2))),
    (3, (2, 4), ((1, 2, 2),)),
]


@pytest.mark.parametrize(("dims", "features", "pools"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_shape_equals_geometry(dims: int, features: tuple[int, ...], pools: object, seed: int) -> None:
    net = ValidUNet(dims, 1, 3, features=features, pool_sizes=pools, dropout=0.0).eval()  # type: ignore[arg-type]
    shape = _random_valid_shape(net, random.Random(seed))
    with torch.inference_mode():
        out = net(torch.randn(1, 1, *shape))
    assert tuple(out.shape[2:]) == net.output_shape(shape)
    assert out.shape[:2] == (1, 3)


@pytest.mark.parametrize(("dims", "features", "pools"), CASES)
def test_invalid_shapes_raise_with_nearest_sizes(dims: int, features: tuple[int, ...], pools: object) -> None:
    net = ValidUNet(dims, 1, 2, features=features, pool_sizes=pools, dropout=0.0)  # type: ignore[arg-type]
    rng = random.Random(7)
    valid = _random_valid_shape(net, rng)
    for axis, geo in enumerate(net.geometry.axes):
        for delta in (1, -1, 2):
            size = valid[axis] + delta
            if geo.is_valid(size):
                continue
            shape = list(valid)
            shape[axis] = size
            low, high = geo.nearest_valid(size)
            with pytest.raises(ValueError, match=f"axis {axis}: size {size} is not valid") as err:
                net(torch.zeros(1, 1, *shape))
            assert str(high) in str(err.value)
            if low is not None:
                assert str(low) in str(err.value)


def test_wrong_rank_and_channels_are_clear_errors() -> None:
    net = ValidUNet(2, 1, 2, features=(4, 8))
    with pytest.raises(ValueError, match="expects a"):
        net(torch.zeros(1, 1, 28, 28, 28))
    with pytest.raises(ValueError, match="1 input channels, got 3"):
        net(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="norm='group' is not supported; valid options are 'batch', 'instance'"):
        ValidUNet(norm="group")
    with pytest.raises(ValueError, match="dropout"):
        ValidUNet(dropout=1.0)


def test_forward_backward_cpu() -> None:
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 2, features=(8, 16, 32), norm="instance")
    x = torch.randn(2, 1, *net.input_shape_for((20, 20)))
    target = torch.randint(0, 2, (2, *net.output_shape(x.shape[2:])))
    loss = nn.functional.cross_entropy(net(x), target)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_he_initialisation_std() -> None:
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 2, features=(64, 128, 256))
    conv = net.down[1][2]  # second 3x3 convolution of level 1: N = 9 * 128
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.02)
    up = net.up[0].conv  # up-convolution 256 -> 128: each output sees one tap per input channel
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.02)
    assert float(conv.bias.detach().abs().max()) == 0.0


def test_dropout_active_only_in_training() -> None:
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 2, features=(4, 8, 16), dropout=0.5)
    x = torch.randn(1, 1, *net.geometry.min_input_shape)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))
    assert not any(isinstance(m, nn.Dropout) for m in ValidUNet(2, features=(4, 8), dropout=0.0).modules())


def test_device_agnostic_forward_on_meta_device() -> None:
    """No tensor is created on a hard-wired device inside forward: it runs on the meta device."""
    net = ValidUNet(3, 1, 2, features=(4, 8), norm="batch").to("meta").eval()
    out = net(torch.empty(1, 1, 28, 28, 28, device="meta"))
    assert out.device.type == "meta"
    assert out.shape == (1, 2, *net.output_shape((28, 28, 28)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_moves_to_cuda() -> None:
    net = ValidUNet(2, 1, 2, features=(4, 8)).to("cuda")
    out = net(torch.randn(1, 1, 28, 28, device="cuda"))
    assert out.device.type == "cuda"
