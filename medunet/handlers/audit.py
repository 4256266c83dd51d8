"""A record of what each rank of a distributed run did: the cases it trained on and its final weights."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from medunet.utils.files import atomic_write_json

__all__ = ["RankAudit"]


class RankAudit:
    """Writes ``<output_dir>/audit/rank<R>.json``: per epoch, the cases (data-list entries) this rank's
    sampler drew, and a SHA-256 of its final parameters (ranks of a correct data-parallel run hold identical
    weights and see disjoint shards). Cheap; meant for tests and for checking a cluster set-up."""

    def __init__(self, output_dir: str | Path, network: torch.nn.Module, rank: int) -> None:
        self.path = Path(output_dir) / "audit" / f"rank{rank}.json"
        self.network, self.rank = network, rank
        self.samples: list[list[str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._record)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _record(self, engine: Engine) -> None:
        loader: Any = engine.state.dataloader
        sampler, dataset = getattr(loader, "sampler", None), getattr(loader, "dataset", None)
        if sampler is None or dataset is None:
            return
        data = getattr(dataset, "data", None)
        # The sampler's epoch was set at this EPOCH_STARTED (MONAI's trainer does it), so iterating it
        # reproduces exactly the indices the loader draws.
        self.samples.append([str(data[i]["image"]) if data is not None else str(i) for i in iter(sampler)])

    def _write(self, engine: Engine) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(self.network.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        atomic_write_json(
            self.path,
            {
                "rank": self.rank,
                "epochs": engine.state.epoch,
                "samples": self.samples,
                "weights_sha256": digest.hexdigest(),
            },
        )
