"""Configuration values of the wrong type give a clear error naming the parameter, instead of another network."""

from __future__ import annotations

import pytest

from medunet.networks import ValidUNet

CASES = [
    ({"features": "64"}, r"features must be a list of positive integers .* got '64'"),
    ({"features": 64}, r"features must be a list of positive integers .* got 64"),
    ({"features": [16, 32.5, 64]}, r"features\[1\] must be an integer >= 1, got 32\.5"),
    ({"features": [16, True]}, r"features\[1\] must be an integer >= 1, got True \(a bool\)"),
    ({"features": [16, 0]}, r"features\[1\] must be an integer >= 1, got 0"),
    ({"features": []}, r"features must be a non-empty list"),
    ({"in_channels": "1"}, r"in_channels must be an integer >= 1, got '1' \(a str\)"),
    ({"out_channels": 2.5}, r"out_channels must be an integer >= 1, got 2\.5"),
    ({"features": [8, 16], "pool_sizes": ["2"]}, r"pool_sizes\[0\] must be a list of positive integers"),
    ({"features": [8, 16], "pool_sizes": [1.5]}, r"pool_sizes\[0\] must be an integer >= 1, got 1\.5"),
    ({"spatial_dims": 4}, r"spatial_dims must be 1, 2 or 3, got 4"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
]


@pytest.mark.parametrize(("kwargs", "message"), CASES, ids=[str(c[0]) for c in CASES])
def test_network_parameters_of_the_wrong_type_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ValidUNet(**kwargs)


def test_integral_floats_from_json_build_the_same_network() -> None:
    a, b = ValidUNet(features=[8, 16]), ValidUNet(features=[8.0, 16.0], in_channels=1.0)
    assert a.features == b.features == (8, 16)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
