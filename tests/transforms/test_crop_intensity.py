"""Tiles and crops line up with the network output; intensity presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medunet.networks import UNetGeometry
from medunet.transforms import CropToOutputd, RandValidTiled, crop_to_output, intensity_preset


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


def test_intensity_presets() -> None:
    ct = torch.tensor([[-1000.0, -160.0, 40.0, 240.0, 3000.0]])
    np.testing.assert_allclose(np.asarray(intensity_preset("ct")(ct)), [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    mr = torch.from_numpy(np.random.default_rng(0).gamma(2.0, 100.0, size=(1, 50, 50)).astype(np.float32))
    mr[0, 0, 0] = 1e6  # an outlier the percentile clip removes
    normed = np.asarray(intensity_preset("mr")(mr))
    assert abs(normed.mean()) < 1e-3
    assert abs(normed.std() - 1.0) < 1e-2
    assert normed.max() < 10
    em = torch.tensor([[[10.0, 20.0], [30.0, 50.0]]])
    np.testing.assert_allclose(np.asarray(intensity_preset("microscopy")(em)), [[[0.0, 0.25], [0.5, 1.0]]])
    with pytest.raises(ValueError, match="preset='pet' is not supported; valid options are 'ct', 'mr', 'microscopy'"):
        intensity_preset("pet")
    with pytest.raises(ValueError, match="does not take"):
        intensity_preset("ct", lower=1)
