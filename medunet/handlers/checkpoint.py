"""Checkpoints written atomically, and the one place their file names are defined.

MONAI's ``CheckpointSaver`` writes in place (its disk saver is not atomic), so a process killed during the
write leaves a truncated file that the next resume cannot read. Here every checkpoint goes through
:func:`medunet.utils.files.atomic_write` (temporary file + rename).

Files in a training run's ``output_dir``:

- ``checkpoint_epoch=N.pt``: everything a resume needs (model, optimiser, schedule, engine, random state);
- ``best_model.pt``: the model weights at the best key metric, with ``best_model.json`` holding that value;
  optionally stored in float16 (``weights_dtype``), which halves a shipped model's file and is read back into a
  float32 network by ``load_state_dict``.

:class:`CheckpointLoader` reads them back (resume, inference, evaluation) with errors that name the file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader as MonaiCheckpointLoader

from medunet.networks.weights import cast_floating, checkpoint_mismatch, model_state, read_checkpoint
from medunet.utils.enums import CheckpointMode, WeightsDtype, look_up
from medunet.utils.files import atomic_write, atomic_write_json

__all__ = [
    "BEST_MODEL",
    "AtomicCheckpointSaver",
    "CheckpointLoader",
    "atomic_save",
    "best_checkpoint",
    "best_checkpoint_path",
    "checkpoint_epoch",
    "epoch_checkpoint_name",
    "epoch_checkpoints",
    "latest_checkpoint",
]

logger = logging.getLogger(__name__)

BEST_MODEL = "best_model.pt"
_EPOCH_PATTERN = re.compile(r"^checkpoint_epoch=(\d+)\.pt$")


def epoch_checkpoint_name(epoch: int) -> str:
    """``checkpoint_epoch=N.pt``, the file of the state after epoch ``N``."""
    return f"checkpoint_epoch={int(epoch)}.pt"


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch ``N`` of a ``checkpoint_epoch=N.pt`` file, None for any other file name."""
    match = _EPOCH_PATTERN.match(Path(path).name)
    return int(match.group(1)) if match else None


def epoch_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """The ``(epoch, path)`` of every epoch checkpoint in ``output_dir``, oldest first."""
    folder = Path(output_dir)
    found = [(epoch, p) for p in folder.glob("checkpoint_epoch=*.pt") if (epoch := checkpoint_epoch(p)) is not None]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint_epoch=N.pt`` in ``output_dir``, or None."""
    found = epoch_checkpoints(output_dir)
    return str(found[-1][1]) if found else None


def best_checkpoint_path(output_dir: str | Path) -> str:
    """Where ``best_model.pt`` of a run in ``output_dir`` is (whether or not it exists yet)."""
    return str(Path(output_dir) / BEST_MODEL)


def best_checkpoint(output_dir: str | Path) -> str | None:
    """The best-by-key-metric model weights (``best_model.pt``) in ``output_dir``, or None."""
    path = best_checkpoint_path(output_dir)
    return path if Path(path).is_file() else None


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


class AtomicCheckpointSaver:
    """Saves ``{name: obj.state_dict()}`` for ``save_dict``.

    Attached to the trainer (``key_metric=None``): after every ``save_interval`` epochs, as
    ``checkpoint_epoch=N.pt``, keeping the newest ``n_saved``. Attached to the evaluator with ``key_metric``:
    as ``best_model.pt`` whenever that metric improves (``mode="max"`` or ``"min"``, see
    :class:`~medunet.utils.enums.CheckpointMode`); the best value is kept in ``best_model.json`` so a resumed
    run does not overwrite a better model. ``weights_dtype`` (``"float32"`` or ``"float16"``) is the dtype of the
    floating-point tensors in ``best_model.pt``; the epoch checkpoints, which a resume needs exactly, stay as they
    are.
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: Mapping[str, Any],
        key_metric: str | None = None,
        mode: str | CheckpointMode = CheckpointMode.MAX,
        n_saved: int = 1,
        save_interval: int = 1,
        best_filename: str = BEST_MODEL,
        weights_dtype: str | WeightsDtype = WeightsDtype.FLOAT32,
    ) -> None:
        self.mode = look_up(mode, CheckpointMode, "mode")
        if n_saved < 1 or save_interval < 1:
            raise ValueError(f"n_saved and save_interval must be >= 1, got {n_saved} and {save_interval}")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.key_metric = key_metric
        self.n_saved, self.save_interval = n_saved, save_interval
        self.best_path = self.save_dir / best_filename
        self.best_info = self.best_path.with_suffix(".json")
        self.weights_dtype = getattr(torch, look_up(weights_dtype, WeightsDtype, "weights_dtype").value)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _state(self) -> dict[str, Any]:
        return {name: obj.state_dict() for name, obj in self.save_dict.items()}

    def _best_state(self) -> dict[str, Any]:
        """The weights as ``best_model.pt`` stores them: floating-point tensors in ``weights_dtype``."""
        return {name: cast_floating(state, self.weights_dtype) for name, state in self._state().items()}

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if self.key_metric is None:
            if epoch % self.save_interval:
                return
            atomic_save(self._state(), self.save_dir / epoch_checkpoint_name(epoch))
            for _, old in epoch_checkpoints(self.save_dir)[: -self.n_saved]:
                old.unlink(missing_ok=True)
            logger.info("saved checkpoint at epoch %d", epoch)
            return
        value = float(engine.state.metrics[self.key_metric])
        best = json.loads(self.best_info.read_text())["value"] if self.best_info.is_file() else None
        improved = best is None or (value > best if self.mode == CheckpointMode.MAX else value < best)
        if improved:
            atomic_save(self._best_state(), self.best_path)
            atomic_write_json(self.best_info, {"metric": self.key_metric, "value": value, "epoch": epoch})
            logger.info("new best %s = %.4f at epoch %d: saved %s", self.key_metric, value, epoch, self.best_path)


class CheckpointLoader(MonaiCheckpointLoader):
    """MONAI's ``CheckpointLoader`` (same arguments) whose failures name the file and the fix: a missing,
    truncated or corrupt checkpoint, or one saved from another network (which setting to change), instead of
    an error from inside torch's zip reader or ``load_state_dict``'s list of tensors."""

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except Exception as err:
            raise self._explained(err) from err

    def _explained(self, err: Exception) -> Exception:
        """A clear error for ``err``, or ``err`` itself when the checkpoint is readable and fits."""
        try:
            checkpoint = read_checkpoint(self.load_path, self.map_location)
        except (FileNotFoundError, ValueError) as clear:
            return clear
        for key, obj in self.load_dict.items():
            if isinstance(obj, torch.nn.Module):
                entry = checkpoint.get(key, checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
                try:
                    mismatch = checkpoint_mismatch(obj, model_state(entry, self.load_path), self.load_path)
                except ValueError as clear:
                    return clear
                if mismatch is not None:
                    return mismatch
        return err
