"""Running a bundle's trainer: optimiser choice, resume, learning-rate re-sync, checkpoint checks, and the
summary of a distributed inference."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "check_checkpoint",
    "gather_inference_summary",
    "make_optimizer",
    "resume_handler",
    "resync_learning_rate",
    "run_training",
]

logger = logging.getLogger(__name__)


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    learning_rate: float,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``"sgd"`` (the paper: momentum 0.99) or ``"adam"``."""
    kind = name.lower()
    if kind == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"optimizer_name={name!r} is not supported; valid options are 'sgd', 'adam'")


def resume_handler(output_dir: str | Path, load_dict: dict[str, Any], resume: bool = True) -> Any:
    """MONAI's ``CheckpointLoader`` for the latest checkpoint in ``output_dir``, or None (fresh start)."""
    from monai.handlers import CheckpointLoader

    from medunet.engines.checkpoints import latest_checkpoint

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
    circular reference. With ``lr_scheduler``, the learning rate is recomputed for the epoch a resumed run
    starts at (the optimiser state restored from the checkpoint holds the rate of the last step, which for a
    schedule extended by a larger ``epochs`` would be wrong, e.g. 0 at the old end of a decay).
    """
    from ignite.engine import Events

    for handler in attach:
        if handler is not None:
            handler.attach(trainer)
    if early_stop is not None:
        early_stop.set_trainer(trainer)
    if lr_scheduler is not None:
        trainer.add_event_handler(Events.STARTED, lambda _: resync_learning_rate(lr_scheduler))
    trainer.run()


def resync_learning_rate(lr_scheduler: Any) -> None:
    """Sets the optimiser's learning rates to what the scheduler gives for its current epoch."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_lr() outside step() is exactly what is wanted here
        rates = lr_scheduler.get_lr()
    for group, rate in zip(lr_scheduler.optimizer.param_groups, rates):
        group["lr"] = rate


def check_checkpoint(path: str | Path) -> str:
    """Fails early with a clear message when the checkpoint to evaluate or apply is missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; train first or pass --ckpt_path pointing to a .pt file "
            "(the training run writes best_model.pt and checkpoint_epoch=N.pt into its output_dir)"
        )
    return str(path)


def gather_inference_summary(output_dir: str | Path, cases: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Collects which cases every rank segmented and writes ``<output_dir>/inference_summary.json`` on rank 0
    (returns the summary there, None elsewhere). Without torch.distributed it just writes this process's list."""
    import torch.distributed as dist

    mine = [str(c["image"]) for c in cases]
    if dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        rank = dist.get_rank()
    else:
        gathered, rank = [mine], 0
    if rank != 0:
        return None
    every = [c for part in gathered for c in part]
    summary = {
        "ranks": len(gathered),
        "cases": len(every),
        "duplicates": sorted({c for c in every if every.count(c) > 1}),
        "per_rank": {str(r): part for r, part in enumerate(gathered)},
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
