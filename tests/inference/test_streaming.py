"""Regions and streamed output of images not in memory: bit-identical to the in-memory inferer's result."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from medunet.inference import OverlapTileInferer, predict_region, predict_to, scores_to_volume
from medunet.networks import ValidUNet


@pytest.fixture(scope="module")
def net3d() -> ValidUNet:
    torch.manual_seed(0)
    return ValidUNet(spatial_dims=3, features=(4, 8, 16), dropout=0.0).eval()


def _volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, *shape)).astype(np.uint8)


def _scale(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float32) * np.float32(1 / 255)


@pytest.mark.parametrize(("output", "flips"), [("logits", ()), ("logits", (0, 2)), ("probabilities", (0, 2))])
def test_regions_are_bit_identical_to_the_whole_image(net3d: ValidUNet, output: str, flips: tuple[int, ...]) -> None:
    source = _volume((20, 37, 30))
    inferer = OverlapTileInferer(input_tile=(56, 64, 64), output=output, flip_axes=flips)
    whole = inferer(torch.from_numpy(_scale(source))[None], net3d)[0]
    plan = inferer.plan(source.shape[1:], net3d)
    for block in [(12, 20, 16), (20, 24, 32)]:  # two block shapes, neither on the tile grid of the whole image
        out = torch.full_like(whole, float("nan"))
        for start in itertools.product(*(range(0, s, b) for s, b in zip(source.shape[1:], block))):
            size = [min(b, s - i) for i, b, s in zip(start, block, source.shape[1:])]
            region = predict_region(inferer, source, start, size, net3d, plan=plan, transform=_scale)
            out[(slice(None), *(slice(i, i + n) for i, n in zip(start, size)))] = region
        assert torch.equal(out, whole), f"block {block}: max difference {(out - whole).abs().max().item()}"


def test_predict_to_streams_into_a_memmap(net3d: ValidUNet, tmp_path) -> None:
    source = _volume((20, 33, 30), seed=2)
    inferer = OverlapTileInferer(input_tile=(56, 64, 64))
    whole = inferer(torch.from_numpy(_scale(source))[None], net3d)[0]
    labels = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint8, shape=source.shape[1:])
    predict_to(inferer, source, labels, net3d, block_shape=(8, 8, 16), transform=_scale,
               convert=lambda s: scores_to_volume(s, "labels"))  # fmt: skip
    labels.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), whole.argmax(0).numpy())
    logits = np.lib.format.open_memmap(tmp_path / "logits.npy", mode="w+", dtype=np.float32, shape=tuple(whole.shape))
    predict_to(inferer, source, logits, net3d, transform=_scale)
    assert np.array_equal(logits, whole.numpy())


def test_region_outside_the_image_is_refused(net3d: ValidUNet) -> None:
    source = _volume((10, 10, 10))
    with pytest.raises(ValueError, match="not inside the image"):
        predict_region(OverlapTileInferer(input_tile=(48, 48, 48)), source, (0, 0, 5), (4, 4, 6), net3d)
