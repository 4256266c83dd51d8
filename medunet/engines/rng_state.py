"""The random-number state that a resumed run must restore, saved in its checkpoints."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["RNGState"]


class RNGState:
    """Python, NumPy and torch (CPU and CUDA) random states, saved in checkpoints so that a resumed run
    continues the same random stream (MONAI's checkpoints hold the model, optimiser and engine only).

    The state is stored as tensors and plain tuples only, because MONAI's ``CheckpointLoader`` reads
    checkpoints with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        # The legacy global NumPy state is what MONAI transforms without their own seed draw from.
        name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
        state: dict[str, Any] = {
            "python": (version, torch.tensor(internal, dtype=torch.int64), gauss),
            "numpy": (
                name,
                torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
