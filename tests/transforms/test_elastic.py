"""The paper's elastic deformation: grid statistics, interpolation, label integrity, alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medunet.transforms import RandUNetElastic, RandUNetElasticd
from medunet.transforms.functional.elastic import dense_displacement_field, elastic_deform, sample_grid_displacements


@pytest.mark.parametrize("dims", [2, 3])
def test_grid_displacements_have_requested_statistics(dims: int) -> None:
    t = RandUNetElastic(sigma=10.0).set_random_state(0)
    samples = []
    for _ in range(3000 if dims == 2 else 1000):
        t.randomize(dims)
        assert t.grid is not None
        assert t.grid.shape == (dims, *([3] * dims))
        samples.append(t.grid.ravel())
    values = np.concatenate(samples)
    assert abs(values.std() - 10.0) < 0.2
    assert abs(values.mean()) < 0.2


def test_dense_field_passes_through_control_points_and_is_smooth() -> None:
    grid = sample_grid_displacements(np.random.default_rng(1), 2, 3, 10.0)
    field = dense_displacement_field(grid, (101, 81))
    assert field.shape == (2, 101, 81)
    for i, y in enumerate((0, 50, 100)):
        for j, x in enumerate((0, 40, 80)):
            np.testing.assert_allclose(field[:, y, x], grid[:, i, j], atol=1e-6)
    assert np.abs(np.diff(field, axis=1)).max() < 2.0  # smooth: neighbouring displacements differ little


def test_labels_stay_integer_and_aligned_with_image() -> None:
    yy, xx = np.indices((120, 100))
    board = (((yy // 20) + (xx // 20)) % 2).astype(np.int64)
    labels = board * np.where(yy < 60, 1, 3)  # values {0, 1, 3}
    data = {"image": torch.from_numpy(board.astype(np.float32))[None], "label": torch.from_numpy(labels)[None]}
    t = RandUNetElasticd(["image", "label"], order=(3, 0)).set_random_state(5)
    out = t(data)
    label = out["label"][0].numpy()
    assert out["label"].dtype == torch.int64
    assert set(np.unique(label)) <= {0, 1, 3}
    assert not np.array_equal(label, labels)  # it did deform
    agree = ((out["image"][0].numpy() > 0.5) == (label > 0)).mean()
    assert agree > 0.97
    again = RandUNetElasticd(["image", "label"], order=(0, 0)).set_random_state(5)(
        {"image": torch.from_numpy(labels)[None], "label": torch.from_numpy(labels)[None]}
    )
    assert torch.equal(again["image"], again["label"])  # one field for every key


def test_3d_deformation_and_probability_zero() -> None:
    volume = np.random.default_rng(0).normal(size=(1, 20, 24, 16)).astype(np.float32)
    out = RandUNetElastic(sigma=3.0).set_random_state(0)(volume)
    assert out.shape == volume.shape
    assert out.dtype == np.float32
    assert RandUNetElastic(prob=0.0)(volume) is volume


def test_zero_field_is_identity() -> None:
    image = np.random.default_rng(0).normal(size=(2, 30, 40))
    np.testing.assert_allclose(elastic_deform(image, np.zeros((2, 30, 40))), image, atol=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        elastic_deform(image, np.zeros((2, 30, 41)))
