"""Generated default data: touching objects with instance labels, reproducible by seed."""

from __future__ import annotations

import numpy as np
import pytest

from medunet.data.synthetic import synthetic_cells


def test_synthetic_cells_touch_and_are_reproducible() -> None:
    image, instances = synthetic_cells((128, 160), seed=4)
    again, _ = synthetic_cells((128, 160), seed=4)
    np.testing.assert_array_equal(image, again)
    assert instances.max() > 20
    # touching objects: some horizontally adjacent pixels carry two different object labels
    a, b = instances[:, :-1], instances[:, 1:]
    assert ((a > 0) & (b > 0) & (a != b)).sum() > 10


def test_synthetic_3d_blobs_and_bad_shapes() -> None:
    image, instances = synthetic_cells((24, 28, 20), radius=(3.0, 5.0), seed=1)
    assert image.shape == instances.shape == (24, 28, 20)
    assert instances.max() >= 2
    with pytest.raises(ValueError, match="shape"):
        synthetic_cells((4,))
