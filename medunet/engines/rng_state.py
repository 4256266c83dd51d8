"""Random numbers of a training that a resumed run reproduces: the state saved in checkpoints, and the
reseeding of every epoch from the run's seed."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.utils import MAX_SEED

from medunet.engines.distributed import process_rank

__all__ = ["EpochSeed", "RNGState", "epoch_seed"]


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


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of training epoch ``epoch`` (1-based) on process ``rank``: a function of these three alone."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + int(rank) * 104_729) % MAX_SEED


class EpochSeed:
    """Reseeds Python, NumPy, torch and ``dataset``'s random transforms at the start of every training epoch
    from :func:`epoch_seed` (the run's seed, the epoch, the process rank).

    An epoch's random numbers (shuffling, augmentation, dropout) then depend on nothing that happened before
    it, so a run killed and resumed at epoch ``k`` trains epoch ``k`` exactly as an uninterrupted run does.
    Restoring the saved generator states alone does not give that: random transforms keep their own
    generators (MONAI seeds them once when a single-process DataLoader is built), and the validation between
    two epochs draws from the global generators after the checkpoint was written. DataLoader workers must not
    be persistent (the bundles set ``persistent_workers`` false): persistent workers carry their transforms'
    generators from one epoch to the next, and a resumed run starts fresh ones.
    """

    def __init__(self, seed: int, dataset: Any = None) -> None:
        self.seed, self.dataset = int(seed), dataset

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        value = epoch_seed(self.seed, int(engine.state.epoch), process_rank())
        random.seed(value)
        np.random.seed(value % 2**32)  # noqa: NPY002  # the legacy global state MONAI transforms fall back to
        torch.manual_seed(value)
        if self.dataset is not None:
            set_rnd(self.dataset, value)
