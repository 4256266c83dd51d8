"""Running a bundle's trainer: optimiser choice, resume from the latest checkpoint, checkpoint checks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events

from medunet.engines.schedules import resync_learning_rate
from medunet.handlers.checkpoint import CheckpointLoader, checkpoint_epoch, latest_checkpoint
from medunet.utils.enums import OptimizerName, look_up

__all__ = ["check_checkpoint", "make_optimizer", "resume_handler", "run_training"]

logger = logging.getLogger(__name__)


def make_optimizer(
    name: str | OptimizerName,
    params: Iterable[torch.nn.Parameter],
    learning_rate: float,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimiser ``name`` (see :class:`~medunet.utils.enums.OptimizerName`): ``"sgd"`` (the paper:
    momentum 0.99) or ``"adam"`` (``momentum`` unused)."""
    kind = look_up(name, OptimizerName, "optimizer_name")
    if kind == OptimizerName.SGD:
        return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)


def resume_handler(output_dir: str | Path, load_dict: dict[str, Any], resume: bool = True) -> Any:
    """MONAI's ``CheckpointLoader`` for the latest checkpoint in ``output_dir``, or None (fresh start)."""
    path = latest_checkpoint(output_dir) if resume else None
    if path is None:
        return None
    logger.info("resuming from %s", path)
    return CheckpointLoader(
        load_path=path, load_dict=load_dict, map_location={"cuda:0": "cpu"} if not torch.cuda.is_available() else None
    )


def run_training(trainer: Any, attach: Sequence[Any] = (), early_stop: Any = None, lr_scheduler: Any = None) -> None:
    """Attaches handlers that refer to the trainer itself (checkpoints of its state, resume) and runs it.

    Those handlers cannot sit in the trainer's own handler list in a bundle config: that would be a
    circular reference. ``None`` entries (handlers disabled on this rank) are skipped. A training whose latest
    checkpoint already holds the last epoch says so and returns: no MLflow run is started. With ``lr_scheduler``,
    the learning rate is recomputed for the epoch a resumed run starts at
    (:func:`~medunet.engines.schedules.resync_learning_rate`).
    """
    for handler in attach:
        if isinstance(handler, CheckpointLoader) and _finished(handler.load_path, trainer.state.max_epochs):
            logger.warning(
                "training already finished: %s holds the last of %d epochs; nothing to do (raise --epochs to "
                "continue it)",
                handler.load_path,
                trainer.state.max_epochs,
            )
            return
    for handler in attach:
        if handler is not None:
            handler.attach(trainer)
    if early_stop is not None:
        early_stop.set_trainer(trainer)
    if lr_scheduler is not None:
        trainer.add_event_handler(Events.STARTED, lambda _: resync_learning_rate(lr_scheduler))
    trainer.run()


def _finished(checkpoint: str | Path, max_epochs: int | None) -> bool:
    """Whether ``checkpoint`` (a ``checkpoint_epoch=N.pt``, named after the epoch it holds) is at or beyond
    ``max_epochs``; read from the name, so the checkpoint is loaded once, by the resume handler."""
    epoch = checkpoint_epoch(checkpoint)
    return max_epochs is not None and epoch is not None and epoch >= int(max_epochs)


def check_checkpoint(path: str | Path) -> str:
    """Fails early with a clear message when the checkpoint to evaluate or apply is missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; train first, then copy the training's best_model.pt to the bundle's "
            "models/model.pt (read by default) or pass --ckpt_path pointing to a .pt file (the training run writes "
            "best_model.pt and checkpoint_epoch=N.pt into its output_dir)"
        )
    return str(path)
