import pytest
import torch

from medunet.inference import (
    AutocastInferer,
    OverlapTileInferer,
    amp_default,
    autocast_dtype,
    channels_last_default,
    cpu_has_native_bf16,
    to_channels_last,
)
from medunet.networks import ValidUNet


def small_net(dims: int = 2) -> ValidUNet:
    torch.manual_seed(0)
    return ValidUNet(dims, 1, 2, features=(4, 8, 16), dropout=0.0).eval()


def test_defaults() -> None:
    assert autocast_dtype("cpu") == torch.bfloat16
    assert autocast_dtype(torch.device("cuda:0")) == torch.float16
    assert amp_default("cpu") is False, "CPU inference stays float32 (the exactness contract)"
    assert amp_default("cuda") is True
    assert amp_default("cuda", training=True) is True
    assert amp_default("cpu", training=True) is cpu_has_native_bf16(), "bfloat16 training only where it is native"


def test_bf16_training_default_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import medunet.inference.precision as precision

    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert precision.amp_default("cpu", training=True) is native
        assert precision.amp_default("cpu") is False
    assert channels_last_default("cpu") is True
    assert channels_last_default("cpu", training=True) is False
    assert isinstance(cpu_has_native_bf16(), bool)


def test_to_channels_last_converts_modules_and_tensors() -> None:
    net2, net3 = to_channels_last(small_net(2)), to_channels_last(small_net(3))
    conv2 = next(p for p in net2.parameters() if p.ndim == 4)
    conv3 = next(p for p in net3.parameters() if p.ndim == 5)
    assert conv2.is_contiguous(memory_format=torch.channels_last)
    assert conv3.is_contiguous(memory_format=torch.channels_last_3d)
    assert to_channels_last(torch.zeros(1, 2, 3, 4)).is_contiguous(memory_format=torch.channels_last)
    assert to_channels_last(torch.zeros(1, 2, 3, 4, 5)).is_contiguous(memory_format=torch.channels_last_3d)
    three = torch.zeros(2, 3, 4)
    assert to_channels_last(three) is three
    assert to_channels_last("x") == "x"


def test_channels_last_changes_no_result_beyond_rounding() -> None:
    net = small_net()
    x = torch.randn(2, 1, 60, 60)
    with torch.no_grad():
        reference = net(x)
        out = AutocastInferer(channels_last=True)(x, to_channels_last(small_net()))
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_bfloat16_autocast_trains_and_stays_close() -> None:
    net = small_net().train()
    x = torch.randn(1, 1, 60, 60)
    with torch.no_grad():
        reference = net(x)
    out = AutocastInferer(amp=True)(x, net)
    assert out.dtype == torch.float32
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()  # bfloat16 keeps 8 bits of mantissa
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())


def test_overlap_tile_inferer_with_channels_last_and_bfloat16() -> None:
    net = to_channels_last(small_net())
    x = torch.randn(1, 1, 90, 70)
    whole = OverlapTileInferer(input_tile=(-1, -1))(x, net)
    tiled = OverlapTileInferer(input_tile=(76, 76), channels_last=True)(x, net)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)  # float32: the exactness contract holds
    bf16 = OverlapTileInferer(input_tile=(76, 76), amp=True, channels_last=True)(x, net)
    assert bf16.dtype == torch.float32
    assert bf16.shape == whole.shape
    assert (bf16 - whole).abs().max() < 0.05 * whole.abs().max()
    assert OverlapTileInferer(amp=True).plan((90, 70), net).input_tile  # plans with 2-byte activations


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_on_cuda_uses_float16() -> None:
    net = small_net().cuda()
    out = AutocastInferer(amp=True)(torch.randn(1, 1, 60, 60, device="cuda"), net)
    assert out.dtype == torch.float32
