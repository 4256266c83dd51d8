"""Overlap-tile inference: tiled == whole-image pass, mirror extrapolation, flip TTA, devices, errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from torch import nn

from medunet.inference import OverlapTileInferer, channel_argmax, scores_to_volume
from medunet.networks import UNetGeometry, ValidUNet


@pytest.fixture
def native_conv() -> Iterator[None]:
    """PyTorch's native convolution: its accumulation order does not depend on the tensor size, so
    tiled and whole-image results agree to rounding of identical operations. (oneDNN picks algorithms by
    shape; see test_tiled_matches_whole_image_with_onednn for its bound.)"""
    with torch.backends.mkldnn.flags(enabled=False):
        yield


def make_net(dims: int, features: Sequence[int], pools: object = None, seed: int = 0, out: int = 3) -> ValidUNet:
    torch.manual_seed(seed)
    return ValidUNet(dims, 1, out, features=features, pool_sizes=pools, dropout=0.5).eval()  # type: ignore[arg-type]


def whole_image_reference(net: ValidUNet, image: torch.Tensor, mode: str = "symmetric") -> torch.Tensor:
    """One pass over the image mirror-extended with numpy.pad, written independently of the inferer."""
    geo = net.geometry
    spatial = image.shape[2:]
    needed = geo.input_shape_for(spatial)
    widths = [(0, 0), (0, 0)] + [(m, n - s - m) for s, n, m in zip(spatial, needed, geo.margin)]
    padded = np.pad(image.numpy(), widths, mode=mode)
    with torch.inference_mode():
        out = net(torch.from_numpy(padded))
    return out[(slice(None), slice(None), *(slice(0, s) for s in spatial))]


CASES_2D = [((700, 900), [(204, 204), (252, 316), (380, 572)]), ((37, 61), [(204, 204), (220, 236)])]


@pytest.mark.usefixtures("native_conv")
@pytest.mark.parametrize(("shape", "rois"), CASES_2D)
def test_tiled_equals_whole_image_2d(shape: tuple[int, int], rois: list[tuple[int, int]]) -> None:
    net = make_net(2, (4, 8, 16, 32, 64))
    image = torch.randn(1, 1, *shape)
    whole = whole_image_reference(net, image)
    for roi in rois:
        tiled = OverlapTileInferer(input_tile=roi, sw_batch_size=3)(image, net)
        assert tiled.shape == (1, 3, *shape)
        plan = OverlapTileInferer(input_tile=roi).plan(shape, net)
        assert plan.num_tiles > 1 or max(shape) < 100
        assert float((tiled - whole).abs().max()) <= 1e-5, roi


@pytest.mark.usefixtures("native_conv")
@pytest.mark.parametrize(
    ("shape", "pools", "rois"),
    [
        ((150, 130, 45), None, [(60, 60, 60), (76, 68, 84)]),
        ((150, 130, 45), ((2, 2, 1), (2, 2, 2)), [(60, 68, 44), (84, 60, 48)]),
        ((23, 17, 1), None, [(60, 60, 60)]),
    ],
)
def test_tiled_equals_whole_image_3d(shape: tuple[int, ...], pools: object, rois: list[tuple[int, ...]]) -> None:
    net = make_net(3, (2, 4, 8), pools)
    image = torch.randn(1, 1, *shape)
    whole = whole_image_reference(net, image)
    for roi in rois:
        inferer = OverlapTileInferer(input_tile=roi, sw_batch_size=4)
        tiled = inferer(image, net)
        assert tiled.shape == (1, 3, *shape)
        assert float((tiled - whole).abs().max()) <= 1e-5, roi


def test_tiled_matches_whole_image_with_onednn() -> None:
    """With the default CPU backend the agreement is to float32 rounding of differently ordered sums."""
    net = make_net(2, (4, 8, 16, 32, 64))
    image = torch.randn(1, 1, 700, 900)
    whole = OverlapTileInferer()(image, net)
    tiled = OverlapTileInferer(input_tile=(252, 316))(image, net)
    scale = float(whole.abs().max())
    assert float((tiled - whole).abs().max()) <= 1e-5 * scale
    probs = OverlapTileInferer(input_tile=(252, 316), output="probabilities")(image, net)
    assert float((probs - torch.softmax(whole, 1)).abs().max()) <= 1e-5


@pytest.mark.usefixtures("native_conv")
def test_tile_off_the_pooling_grid_differs() -> None:
    """The alignment matters: a tile shifted by half a stride no longer reproduces the whole-image pass."""
    net = make_net(2, (4, 8, 16, 32))
    geo = net.geometry
    image = torch.randn(1, 1, 300, 300)
    whole = whole_image_reference(net, image)
    m, p = geo.margin[0], geo.stride[0]
    padded = torch.from_numpy(np.pad(image.numpy(), [(0, 0), (0, 0), (m, m + 200), (m, m + 200)], mode="symmetric"))
    tile = 180
    out = tile - 2 * m
    with torch.inference_mode():
        for offset, should_match in [(p, True), (3 * p, True), (p // 2, False), (p + 1, False)]:
            pred = net(padded[:, :, offset : offset + tile, offset : offset + tile])
            ref = whole[:, :, offset : offset + out, offset : offset + out]
            diff = float((pred - ref).abs().max())
            if should_match:
                assert diff <= 1e-5, offset
            else:
                assert diff > 1e-2, offset


@pytest.mark.usefixtures("native_conv")
@pytest.mark.parametrize(("dims", "shape", "axes"), [(2, (130, 97), (0, 1)), (3, (40, 33, 21), (0, 2))])
def test_flip_tta_is_equivariant(dims: int, shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    net = make_net(dims, (2, 4, 8))
    image = torch.randn(1, 1, *shape)
    tta = OverlapTileInferer(
        input_tile=(60,) * dims if dims == 3 else (92, 108), flip_axes=axes, output="probabilities"
    )
    base = tta(image, net)
    assert float((base.sum(1) - 1).abs().max()) < 1e-5
    for axis in axes:
        flipped = tta(image.flip(axis + 2), net)
        assert float((flipped - base.flip(axis + 2)).abs().max()) <= 1e-5
    # Without TTA the network itself is not flip-equivariant, so the check above is not vacuous.
    plain = OverlapTileInferer(output="probabilities")
    assert float((plain(image.flip(2), net) - plain(image, net).flip(2)).abs().max()) > 1e-3


@pytest.mark.usefixtures("native_conv")
def test_tta_without_axes_equals_plain_and_averages_flips() -> None:
    net = make_net(2, (2, 4, 8))
    image = torch.randn(2, 1, 50, 70)
    plain = OverlapTileInferer(output="probabilities")(image, net)
    assert torch.equal(OverlapTileInferer(flip_axes=(), output="probabilities")(image, net), plain)
    tta = OverlapTileInferer(flip_axes=(1,), output="probabilities")(image, net)
    flipped = OverlapTileInferer(output="probabilities")(image.flip(3), net).flip(3)
    assert float((tta - (plain + flipped) / 2).abs().max()) <= 1e-6
    logits_tta = OverlapTileInferer(flip_axes=(1,))(image, net)
    expected = (OverlapTileInferer()(image, net) + OverlapTileInferer()(image.flip(3), net).flip(3)) / 2
    assert float((logits_tta - expected).abs().max()) <= 1e-5


@pytest.mark.usefixtures("native_conv")
@pytest.mark.parametrize("mode", ["symmetric", "reflect", "edge", "constant"])
def test_small_images_and_single_slice_are_segmented(mode: str) -> None:
    net2 = make_net(2, (2, 4, 8, 16))
    image = torch.randn(1, 1, 9, 30)  # far smaller than one output tile: margin 44 > image size
    out = OverlapTileInferer(padding_mode=mode)(image, net2)
    assert out.shape == (1, 3, 9, 30)
    np_mode = {"edge": "edge", "constant": "constant"}.get(mode, mode)
    assert float((out - whole_image_reference(net2, image, np_mode)).abs().max()) <= 1e-5
    net3 = make_net(3, (2, 4, 8))
    volume = torch.randn(1, 1, 31, 26, 1)
    out3 = OverlapTileInferer(padding_mode=mode)(volume, net3)
    assert out3.shape == (1, 3, 31, 26, 1)
    assert torch.isfinite(out3).all()
    assert float((out3 - whole_image_reference(net3, volume, np_mode)).abs().max()) <= 1e-5


def test_metatensor_metadata_and_batch() -> None:
    net = make_net(3, (2, 4))
    affine = torch.diag(torch.tensor([0.8, 0.8, 5.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-10.0, 4.0, 2.5], dtype=torch.float64)
    image = MetaTensor(torch.randn(1, 1, 20, 22, 7), affine=affine, meta={"filename_or_obj": "case.nii.gz"})
    out = OverlapTileInferer()(image, net)
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.affine, affine)
    assert out.meta["filename_or_obj"] == "case.nii.gz"
    assert out.shape == (1, 3, 20, 22, 7)


@pytest.mark.usefixtures("native_conv")
def test_batched_inputs_and_wrapped_network() -> None:
    net = make_net(2, (2, 4, 8))
    images = torch.randn(3, 1, 45, 80)
    wrapped = nn.DataParallel(net)  # has .module; runs on the CPU as a plain wrapper
    together = OverlapTileInferer(input_tile=(60, 76), sw_batch_size=5)(images, wrapped)
    for b in range(3):
        single = OverlapTileInferer(input_tile=(60, 76))(images[b : b + 1], net)
        assert float((together[b : b + 1] - single).abs().max()) <= 1e-5


def test_an_output_tile_plans_what_its_input_tile_plans() -> None:
    net = make_net(2, (2, 4, 8))
    by_output = OverlapTileInferer(output_tile=(36, 52)).plan((200, 130), net)
    assert by_output == OverlapTileInferer(input_tile=(76, 92)).plan((200, 130), net)
    assert by_output.output_tile == (36, 52)
    assert OverlapTileInferer(output_tile=36).plan((200, 130), net).input_tile == (76, 76)


def test_bad_arguments_are_clear_errors() -> None:
    net = make_net(2, (2, 4, 8))
    bad_tile = r"input_tile \(70, 60\) is not a valid input tile.*axis 0: size 70 is not valid"
    with pytest.raises(ValueError, match=bad_tile):
        OverlapTileInferer(input_tile=(70, 60))(torch.zeros(1, 1, 100, 100), net)
    with pytest.raises(
        ValueError, match=r"output_tile=\[37, 36\] is not an output tile .*37 \(nearest valid: 36 and 40\)"
    ):
        OverlapTileInferer(output_tile=(37, 36))(torch.zeros(1, 1, 100, 100), net)
    with pytest.raises(ValueError, match="both given; give one"):
        OverlapTileInferer(input_tile=(76, 76), output_tile=(36, 36))
    with pytest.raises(ValueError, match="padding_mode='wrap' is not supported; valid options are"):
        OverlapTileInferer(padding_mode="wrap")
    with pytest.raises(ValueError, match="flip_axes"):
        OverlapTileInferer(flip_axes=(2,))(torch.zeros(1, 1, 50, 50), net)
    with pytest.raises(ValueError, match="inputs must be"):
        OverlapTileInferer()(torch.zeros(1, 50, 50), net)
    with pytest.raises(TypeError, match="needs the network's geometry"):
        OverlapTileInferer()(torch.zeros(1, 1, 50, 50), lambda x: x)
    geo = UNetGeometry.create(2, 3)
    out = OverlapTileInferer(geometry=geo)(torch.zeros(1, 1, 50, 50), lambda x: x[:, :, 16:-16, 16:-16])
    assert out.shape == (1, 1, 50, 50)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_tiles_on_cuda_stitched_on_cpu() -> None:
    net = make_net(2, (2, 4, 8)).to("cuda")
    image = torch.randn(1, 1, 120, 90)
    out = OverlapTileInferer(sw_device="cuda", device="cpu")(image, net)
    assert out.device.type == "cpu"
    reference = OverlapTileInferer()(image.cuda(), net).cpu()
    assert float((out - reference).abs().max()) <= 1e-4


def test_progress_bar_and_separate_stitching_device(capsys: pytest.CaptureFixture[str]) -> None:
    net = make_net(2, (2, 4, 8))
    image = torch.randn(1, 1, 90, 70)
    out = OverlapTileInferer(input_tile=(60, 60), progress=True, sw_device="cpu", device="cpu")(image, net)
    assert out.device.type == "cpu"
    assert "overlap-tile" in capsys.readouterr().err


def test_half_precision_plans_with_two_bytes_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a bfloat16 / float16 preset every activation takes 2 bytes, so a budget fits larger tiles."""
    import medunet.inference.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # the plan, whatever this CPU has
    net = make_net(2, (16, 32, 64, 128, 256))
    budget = 200 * 1024**2
    plain = OverlapTileInferer(memory_budget=budget).plan((2048, 2048), net)
    halved = OverlapTileInferer(memory_budget=budget, precision="bfloat16").plan((2048, 2048), net)
    assert halved.num_tiles < plain.num_tiles
    assert np.prod(halved.input_tile) > np.prod(plain.input_tile)
    cuda = torch.device("cuda")
    on_cuda = OverlapTileInferer(memory_budget=budget, precision="float16").plan((2048, 2048), net, cuda)
    assert on_cuda.num_tiles < OverlapTileInferer(memory_budget=budget).plan((2048, 2048), net, cuda).num_tiles


@pytest.mark.parametrize("classes", [1, 2, 5, 300])
def test_channel_argmax_equals_torch_argmax(classes: int) -> None:
    gen = torch.Generator().manual_seed(classes)
    scores = torch.randint(-3, 4, (classes, 6, 7, 8), generator=gen).float()  # integers: many ties
    scores[:, 0, 0, 0] = float("nan")  # NaN everywhere
    scores[-1, 1, 1, 1] = float("nan")  # NaN in the last channel only
    scores[0, 2, 2, 2] = float("nan")  # NaN in the first channel only
    scores[classes // 2, 3, 3, :] = float("inf")
    labels = channel_argmax(scores)
    assert labels.dtype == (torch.uint8 if classes <= 256 else torch.uint16)
    np.testing.assert_array_equal(labels.numpy(), scores.argmax(dim=0).numpy())
    if classes == 300:
        assert labels.numpy().max() > 255


def test_scores_to_volume_modes() -> None:
    scores = torch.tensor([[0.2, 0.7], [0.8, 0.3]])
    np.testing.assert_array_equal(scores_to_volume(scores, "labels"), [1, 0])
    np.testing.assert_array_equal(scores_to_volume(scores, "probabilities"), [[51, 178], [204, 76]])
    assert scores_to_volume(scores, "probabilities", "float16").dtype == np.float16
    with pytest.raises(
        ValueError, match=r"probability_dtype='int8' is not supported; valid options are 'uint8', 'float16'"
    ):
        scores_to_volume(scores, "probabilities", "int8")
