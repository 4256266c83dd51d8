from __future__ import annotations

import numpy as np
import pytest

from medunet.utils.values import positive_int, positive_ints


@pytest.mark.parametrize(("value", "expected"), [(3, 3), (np.int64(4), 4), (64.0, 64), (np.float32(2.0), 2)])
def test_positive_int_accepts_integers_and_integral_floats(value: object, expected: int) -> None:
    result = positive_int(value, "n")
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("64", r"n must be an integer >= 1, got '64' \(a str\)"),
        (64.5, r"got 64\.5$"),
        (True, r"got True \(a bool\)"),
        (0, r"got 0$"),
        (-2, r"got -2$"),
        (None, r"got None \(a NoneType\)"),
        (float("nan"), r"got nan$"),
    ],
)
def test_positive_int_refuses_what_is_not_a_positive_integer(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        positive_int(value, "n")


def test_positive_ints() -> None:
    assert positive_ints([16, 32.0, np.int32(64)], "features") == (16, 32, 64)
    with pytest.raises(
        ValueError, match=r"features must be a list of positive integers such as \[64, 128, 256\], got '64'"
    ):
        positive_ints("64", "features")
    with pytest.raises(ValueError, match=r"got 64$"):
        positive_ints(64, "features")
    with pytest.raises(ValueError, match="non-empty"):
        positive_ints([], "features")
    with pytest.raises(ValueError, match=r"features\[1\] must be an integer >= 1, got 32\.5"):
        positive_ints([16, 32.5], "features")
