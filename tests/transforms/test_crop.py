"""Valid-size training tiles and crops to the network's output region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medunet.networks import UNetGeometry
from medunet.transforms import CropToOutputd, RandValidTiled, crop_to_output


def centre_crop_network(geometry: UNetGeometry):
    """A stand-in network whose output is the centre crop of its input: output == the label region."""

    def net(x: torch.Tensor) -> torch.Tensor:
        m = geometry.margin
        return x[(slice(None), slice(None), *(slice(mi, s - mi) for mi, s in zip(m, x.shape[2:])))]

    return net


@pytest.mark.parametrize(
    ("dims", "shape", "output"), [(2, (150, 170), (36, 20)), (2, (9, 30), (40, 40)), (3, (40, 33, 12), (12, 12, 8))]
)
def test_random_tiles_line_up_with_network_output(dims: int, shape: tuple[int, ...], output: tuple[int, ...]) -> None:
    geometry = UNetGeometry.create(dims, 3)
    values = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(1, *shape)
    data = {"image": MetaTensor(values), "label": MetaTensor(values.clone()), "weight": values.clone()}
    sampler = RandValidTiled("image", ["label", "weight"], geometry, output, num_samples=5).set_random_state(3)
    net = centre_crop_network(geometry)
    for sample in sampler(data):
        assert geometry.is_valid_input_shape(sample["image"].shape[1:])
        assert tuple(sample["label"].shape[1:]) == geometry.output_shape(sample["image"].shape[1:])
        pred = net(torch.as_tensor(sample["image"])[None])[0]
        assert torch.equal(pred, torch.as_tensor(sample["label"]))
        assert torch.equal(pred, torch.as_tensor(sample["weight"]))


def test_tile_affine_follows_the_crop() -> None:
    geometry = UNetGeometry.create(2, 3)
    affine = torch.diag(torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.zeros(1, 100, 100), affine=affine)
    sample = RandValidTiled("image", "label", geometry, (20, 20)).set_random_state(0)(
        {"image": image, "label": image.clone()}
    )[0]
    replay = RandValidTiled("image", "label", geometry, (20, 20)).set_random_state(0)
    replay.randomize((100, 100))  # the same seed draws the same output start
    (sy, sx) = replay.starts[0]
    assert float(sample["label"].affine[0, 2]) == pytest.approx(0.5 * sy)
    assert float(sample["image"].affine[1, 2]) == pytest.approx(2.0 * (sx - geometry.margin[1]))


def test_crop_to_output() -> None:
    geometry = UNetGeometry.create(2, 5)
    label = MetaTensor(torch.zeros(1, 572, 572))
    assert crop_to_output(label, geometry).shape == (1, 388, 388)
    out = CropToOutputd(["label", "weight"], geometry)({"label": label, "weight": torch.zeros(1, 572, 572)})
    assert out["weight"].shape == (1, 388, 388)
    with pytest.raises(ValueError, match="nearest valid input sizes are 556 and 572"):
        crop_to_output(torch.zeros(1, 570, 572), geometry)


def test_tiles_do_not_share_memory_with_the_cached_image() -> None:
    geometry = UNetGeometry.create(2, 3)
    image = torch.arange(200 * 200, dtype=torch.float32).reshape(1, 200, 200)
    original = image.clone()
    sampler = RandValidTiled("image", "label", geometry, output_tile=(20, 20), num_samples=2)
    for sample in sampler({"image": image, "label": torch.zeros(1, 200, 200)}):
        sample["image"] += 1  # an in-place augmentation later in the chain
    assert torch.equal(image, original)


@pytest.mark.parametrize(("ratio", "low", "high"), [(1.0, 1.0, 1.0), (0.5, 0.35, 0.7), (0.0, 0.0, 0.05)])
def test_foreground_ratio_oversamples_a_small_object(ratio: float, low: float, high: float) -> None:
    """A 6x6x2 object in a 120x120x20 volume: a uniform 12x12x8 output region holds it in about 1 % of draws."""
    geometry = UNetGeometry.create(3, 2)
    label = torch.zeros(1, 120, 120, 20)
    label[0, 90:96, 20:26, 15:17] = 1
    sampler = RandValidTiled("image", "label", geometry, (12, 12, 8), num_samples=200, foreground_ratio=ratio)
    samples = sampler.set_random_state(0)({"image": torch.zeros(1, 120, 120, 20), "label": label})
    for sample in samples:
        assert geometry.is_valid_input_shape(sample["image"].shape[1:])
    with_object = np.mean([float(s["label"].max()) for s in samples])
    assert low <= with_object <= high
    if ratio == 1.0:  # the object's voxels land anywhere in the region, not only at its centre
        offsets = {tuple(int(i) for i in np.argwhere(s["label"][0].numpy() > 0).min(axis=0)) for s in samples}
        assert len(offsets) > 20


def test_foreground_ratio_without_foreground_draws_uniformly() -> None:
    geometry = UNetGeometry.create(2, 2)
    sampler = RandValidTiled("image", "label", geometry, (20, 20), num_samples=3, foreground_ratio=1.0)
    samples = sampler.set_random_state(0)({"image": torch.zeros(1, 64, 64), "label": torch.zeros(1, 64, 64)})
    assert len(samples) == 3
    with pytest.raises(ValueError, match=r"foreground_ratio must be from 0 to 1, got 1\.5"):
        RandValidTiled("image", "label", geometry, (20, 20), foreground_ratio=1.5)
