"""Mirror extension and region extraction, shared by the inferer and the training tile sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medunet.utils.enums import PaddingMode
from medunet.utils.regions import extension_indices, extract_region, read_region


@pytest.mark.parametrize("mode", list(PaddingMode))
@pytest.mark.parametrize("size", [1, 2, 5])
def test_extension_indices_match_numpy_pad(mode: PaddingMode, size: int) -> None:
    data = np.arange(1, size + 1)
    before, after = 23, 31  # much larger than the axis
    reference = np.pad(data, (before, after), mode=str(mode))
    idx, inside = extension_indices(np.arange(-before, size + after), size, mode)
    values = data[idx] * (inside if inside is not None else 1)
    np.testing.assert_array_equal(values, reference)


@pytest.mark.parametrize("mode", list(PaddingMode))
@pytest.mark.parametrize(
    ("start", "size"), [((-7, 3, -2), (20, 4, 9)), ((1, 0, 2), (3, 5, 2)), ((-30, -30, 5), (70, 70, 3))]
)
def test_region_equals_a_crop_of_the_padded_array_for_numpy_and_torch(
    mode: PaddingMode, start: tuple[int, ...], size: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(0)
    array = rng.random((2, 6, 5, 7)).astype(np.float32)
    pad = 80
    padded = np.pad(array, [(0, 0)] + [(pad, pad)] * 3, mode=str(mode))
    expected = padded[(slice(None), *(slice(s + pad, s + pad + n) for s, n in zip(start, size)))]
    original = array.copy()
    np.testing.assert_array_equal(extract_region(array, start, size, mode), expected)
    tensor = torch.from_numpy(array)
    region = extract_region(tensor, start, size, mode)
    assert isinstance(region, torch.Tensor)
    np.testing.assert_array_equal(region.numpy(), expected)
    np.testing.assert_array_equal(array, original)  # the input is never modified


def test_region_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"one entry per spatial axis of an array of shape \(1, 4, 4\)"):
        extract_region(np.zeros((1, 4, 4)), (0, 0, 0), (2, 2, 2))
    with pytest.raises(ValueError, match="padding_mode='wrap' is not supported"):
        extension_indices(np.arange(3), 3, "wrap")


@pytest.mark.parametrize("mode", ["symmetric", "reflect", "edge", "constant"])
def test_read_region_equals_extract_region(mode: str) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (2, 7, 20, 9)).astype(np.uint8)
    for _ in range(100):
        start, size = rng.integers(-30, 25, 3), rng.integers(1, 40, 3)
        got = read_region(image, start, size, mode)
        assert got.dtype == image.dtype
        np.testing.assert_array_equal(got, extract_region(image, start, size, mode))
