"""Batch-norm recalibration on the inferer's own tiles: the statistics it sets, what it leaves alone, its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medunet.inference import OverlapTileInferer, recalibrate_batch_norm
from medunet.networks import ValidUNet


def make_net() -> ValidUNet:
    torch.manual_seed(0)
    return ValidUNet(2, 1, 2, features=(4, 8), norm="batch", dropout=0.5).eval()


def test_statistics_are_the_average_over_every_tile_of_every_image() -> None:
    net = make_net()
    first = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    first.running_mean.fill_(5.0)  # type: ignore[union-attr]  # as left by training on other tiles
    seen: list[torch.Tensor] = []
    first.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    torch.manual_seed(1)
    images = [torch.rand(1, 1, 40, 52) * 3.0, torch.rand(1, 1, 30, 30) + 1.0]
    inferer = OverlapTileInferer(output_tile=(12, 12))

    calls = recalibrate_batch_norm(net, images, inferer)

    assert calls == len(seen) > len(images)  # several tiles per image, each counted once
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen])
    variances = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in seen])
    torch.testing.assert_close(first.running_mean, means.mean(0))
    torch.testing.assert_close(first.running_var, variances.mean(0))


def test_the_network_is_left_for_exact_inference_and_dropout_stays_off() -> None:
    net = make_net()
    dropout_modes: list[bool] = []
    for m in net.modules():
        if isinstance(m, nn.Dropout | nn.Dropout2d):
            m.register_forward_pre_hook(lambda mod, _a: dropout_modes.append(mod.training))
    momenta = [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    image = torch.rand(1, 1, 44, 36)

    recalibrate_batch_norm(net, [image], OverlapTileInferer(output_tile=(12, 12)))

    assert dropout_modes
    assert not any(dropout_modes)
    assert not any(m.training for m in net.modules())
    assert [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    small, large = (OverlapTileInferer(output_tile=t)(image, net) for t in ((12, 12), (28, 20)))
    torch.testing.assert_close(small, large, rtol=1e-4, atol=1e-4)  # tiling does not change the result


def test_a_network_without_batch_norm_is_refused() -> None:
    net = ValidUNet(2, 1, 2, features=(4, 8), norm=None, dropout=0.0)
    with pytest.raises(ValueError, match="no batch-norm layer"):
        recalibrate_batch_norm(net, [torch.rand(1, 1, 20, 20)], OverlapTileInferer(output_tile=(12, 12)))


def test_no_image_or_a_failing_inferer_leaves_the_statistics_as_they_were() -> None:
    net = make_net()
    first = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    first.running_mean.fill_(5.0)  # type: ignore[union-attr]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="no tile was run"):
        recalibrate_batch_norm(net, [], OverlapTileInferer(output_tile=(12, 12)))

    def broken(image: torch.Tensor, network: nn.Module) -> torch.Tensor:
        network(torch.rand(1, 1, 108, 108))  # one call accumulates, then the inferer fails
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        recalibrate_batch_norm(net, [torch.rand(1, 1, 20, 20)], broken)
    after = net.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, msg=key)
    assert first.momentum == 0.1
    assert not net.training
