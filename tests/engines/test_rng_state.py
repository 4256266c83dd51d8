"""The random state saved in checkpoints restores the Python, NumPy and torch streams."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from medunet.engines import RNGState


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path: Path) -> None:
    state = RNGState()
    torch.save({"rng": state.state_dict()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    state.load_state_dict(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected  # noqa: NPY002
