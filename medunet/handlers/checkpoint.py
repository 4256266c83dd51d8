"""Checkpoints written atomically: latest per epoch and best by the key metric.

MONAI's ``CheckpointSaver`` writes in place (its disk saver is not atomic), so a process killed during the
write leaves a truncated file that the next resume cannot read. Here every checkpoint is written to a
temporary file in the same folder and renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["AtomicCheckpointSaver", "atomic_save"]

logger = logging.getLogger(__name__)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class AtomicCheckpointSaver:
    """Saves ``{name: obj.state_dict()}`` for ``save_dict``.

    Attached to the trainer (``key_metric=None``): after every ``save_interval`` epochs, as
    ``checkpoint_epoch=N.pt``, keeping the newest ``n_saved``. Attached to the evaluator with ``key_metric``:
    as ``best_model.pt`` whenever that metric improves (``mode="max"`` or ``"min"``); the best value is kept
    in ``best_model.json`` so a resumed run does not overwrite a better model.
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: Mapping[str, Any],
        key_metric: str | None = None,
        mode: str = "max",
        n_saved: int = 1,
        save_interval: int = 1,
        best_filename: str = "best_model.pt",
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r} is not supported; valid options are 'max', 'min'")
        if n_saved < 1 or save_interval < 1:
            raise ValueError(f"n_saved and save_interval must be >= 1, got {n_saved} and {save_interval}")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.key_metric, self.mode = key_metric, mode
        self.n_saved, self.save_interval = n_saved, save_interval
        self.best_path = self.save_dir / best_filename
        self.best_info = self.best_path.with_suffix(".json")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _state(self) -> dict[str, Any]:
        return {name: obj.state_dict() for name, obj in self.save_dict.items()}

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if self.key_metric is None:
            if epoch % self.save_interval:
                return
            atomic_save(self._state(), self.save_dir / f"checkpoint_epoch={epoch}.pt")
            pattern = re.compile(r"checkpoint_epoch=(\d+)\.pt$")
            found = sorted(
                (int(m.group(1)), p)
                for p in self.save_dir.glob("checkpoint_epoch=*.pt")
                if (m := pattern.search(p.name))
            )
            for _, old in found[: -self.n_saved]:
                old.unlink(missing_ok=True)
            logger.info("saved checkpoint at epoch %d", epoch)
            return
        value = float(engine.state.metrics[self.key_metric])
        best = json.loads(self.best_info.read_text())["value"] if self.best_info.is_file() else None
        improved = best is None or (value > best if self.mode == "max" else value < best)
        if improved:
            atomic_save(self._state(), self.best_path)
            tmp = self.best_info.with_name(f".{self.best_info.name}.tmp")
            tmp.write_text(json.dumps({"metric": self.key_metric, "value": value, "epoch": epoch}))
            os.replace(tmp, self.best_info)
            logger.info("new best %s = %.4f at epoch %d: saved %s", self.key_metric, value, epoch, self.best_path)
