import pytest
import torch

from medunet.inference import (
    AutocastInferer,
    OverlapTileInferer,
    amp_default,
    amp_precision,
    autocast_dtype,
    channels_last_default,
    cpu_has_native_bf16,
    precision_dtype,
    to_channels_last,
)
from medunet.networks import ValidUNet


def small_net(dims: int = 2) -> ValidUNet:
    torch.manual_seed(0)
    return ValidUNet(dims, 1, 2, features=(4, 8, 16), dropout=0.0).eval()


def test_defaults() -> None:
    assert autocast_dtype("cpu") == torch.bfloat16
    assert autocast_dtype(torch.device("cuda:0")) == torch.float16
    assert amp_default("cpu") is False, "inference stays float32 (the exactness contract)"
    assert amp_default("cuda") is False, "inference stays float32 on CUDA too: float16 is an opt-in preset"
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


def simulate_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """The CPU capability check answers ``native`` (this machine's CPU may have bfloat16 or not)."""
    import medunet.inference.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)


def test_overlap_tile_inferer_with_channels_last_and_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate_native_bf16(monkeypatch, True)  # the preset's result, wherever this runs (emulated: slow but equal)
    net = to_channels_last(small_net())
    x = torch.randn(1, 1, 90, 70)
    whole = OverlapTileInferer(input_tile=(-1, -1))(x, net)
    tiled = OverlapTileInferer(input_tile=(76, 76), channels_last=True)(x, net)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)  # float32: the exactness contract holds
    seen: list[torch.dtype] = []
    hook = net.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    bf16 = OverlapTileInferer(input_tile=(76, 76), precision="bfloat16", channels_last=True)(x, net)
    hook.remove()
    assert set(seen) == {torch.bfloat16}
    assert bf16.dtype == torch.float32
    assert bf16.shape == whole.shape
    assert (bf16 - whole).abs().max() < 0.05 * whole.abs().max()
    fp32_plan = OverlapTileInferer(memory_budget=2**24).plan((900, 700), net)
    bf16_plan = OverlapTileInferer(memory_budget=2**24, precision="bfloat16").plan((900, 700), net)
    assert bf16_plan.num_tiles < fp32_plan.num_tiles  # 2-byte activations: larger tiles fit the same budget


def test_bfloat16_preset_is_refused_on_a_cpu_without_native_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate_native_bf16(monkeypatch, False)
    message = r"precision='bfloat16' needs a CPU with native bfloat16 \(AVX512-BF16 or AMX\); this CPU has neither"
    with pytest.raises(ValueError, match=message):
        precision_dtype("bfloat16", "cpu")
    net = small_net()
    calls: list[int] = []
    net.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=message):
        OverlapTileInferer(input_tile=(76, 76), precision="bfloat16")(torch.randn(1, 1, 90, 70), net)
    assert not calls, "refused before any pass"
    simulate_native_bf16(monkeypatch, True)
    assert precision_dtype("bfloat16", "cpu") == torch.bfloat16


def test_precision_presets_name_what_each_device_can_do(monkeypatch: pytest.MonkeyPatch) -> None:
    assert precision_dtype("float32", "cpu") is None
    assert precision_dtype("FLOAT32", torch.device("cuda:0")) is None
    assert precision_dtype("float16", "cuda") == torch.float16
    with pytest.raises(ValueError, match=r"precision='float16' runs on CUDA GPUs only .* on a CPU use 'bfloat16'"):
        precision_dtype("float16", "cpu")
    with pytest.raises(ValueError, match=r"precision='half' is not supported; valid options are 'float32', 'bfloat16'"):
        OverlapTileInferer(precision="half")
    for native in (True, False):
        simulate_native_bf16(monkeypatch, native)
        assert amp_precision(False, "cpu") == "float32"
        assert amp_precision(True, "cpu") == ("bfloat16" if native else "float32")
        assert amp_precision("true", "cuda") == "float16"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_on_cuda_uses_float16() -> None:
    net = small_net().cuda()
    out = AutocastInferer(amp=True)(torch.randn(1, 1, 60, 60, device="cuda"), net)
    assert out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_fast_presets_on_cuda_autocast_and_stay_close(precision: str) -> None:
    net = small_net().cuda()
    x = torch.randn(1, 1, 90, 70, device="cuda")
    whole = OverlapTileInferer(input_tile=(-1, -1))(x, net)
    seen: list[torch.dtype] = []
    net.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    fast = OverlapTileInferer(input_tile=(76, 76), precision=precision)(x, net)
    assert set(seen) == {getattr(torch, precision)}
    assert fast.dtype == torch.float32
    assert (fast - whole).abs().max() < 0.05 * whole.abs().max()
