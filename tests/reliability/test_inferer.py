"""Input the overlap-tile inferer cannot segment meaningfully: a clear error, not a library's traceback."""

from __future__ import annotations

import pytest
import torch

from medunet.inference import OverlapTileInferer
from medunet.networks import ValidUNet


@pytest.fixture(scope="module")
def network() -> ValidUNet:
    return ValidUNet(features=[4, 8]).eval()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (torch.randint(0, 255, (1, 1, 40, 40), dtype=torch.uint8), r"inputs are torch\.uint8.*image\.float\(\) / 255"),
        (torch.zeros(1, 1, 0, 40), r"empty spatial axis \(shape \(1, 1, 0, 40\)\)"),
        (torch.zeros(1, 2, 40, 40), r"expects 1 input channels, got 2"),
        (torch.zeros(1, 40, 40), r"inputs must be \(B, C, S, S\) for a 2D network"),
        (torch.zeros(0, 1, 40, 40), r"inputs of shape \(0, 1, 40, 40\) hold no image: .* \(B >= 1\)"),
        (torch.zeros(1, 0, 40, 40), r"inputs of shape \(1, 0, 40, 40\) hold no image: .* \(C >= 1\)"),
    ],
    ids=["uint8", "empty", "channels", "no batch axis", "empty batch", "no channel"],
)
def test_bad_inferer_input_is_a_clear_error(network: ValidUNet, inputs: torch.Tensor, message: str) -> None:
    inferer = OverlapTileInferer(input_tile=network.input_shape_for([16, 16]))
    with pytest.raises(ValueError, match=message):
        inferer(inputs, network)
