"""Learning-rate schedules of the bundles, and their re-synchronisation when a run resumes."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["poly_lr_scheduler", "resync_learning_rate"]


def poly_lr_scheduler(optimizer: torch.optim.Optimizer, epochs: int, power: float = 0.9) -> LambdaLR:
    """Polynomial decay over ``epochs`` epochs: ``lr = lr0 * max(1 - epoch / epochs, 0) ** power``.

    The factor is a plain function (not a callable object), so ``LambdaLR.state_dict`` does not store it and a
    run resumed with a larger ``epochs`` follows the new schedule rather than the checkpoint's (see
    :func:`resync_learning_rate`).

    Raises:
        ValueError: ``epochs < 1`` or ``power < 0``.
    """
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1 for the learning-rate schedule, got {epochs}")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    total, exponent = int(epochs), float(power)

    def factor(epoch: int) -> float:
        return max(1.0 - epoch / total, 0.0) ** exponent

    return LambdaLR(optimizer, lr_lambda=factor)


def resync_learning_rate(lr_scheduler: Any) -> None:
    """Sets the optimiser's learning rates to what the scheduler gives for its current epoch.

    A resumed run restores the optimiser state, which holds the rate of the last step; for a schedule
    extended by a larger ``epochs`` that rate is wrong (e.g. 0 at the old end of a decay).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_lr() outside step() is exactly what is wanted here
        rates = lr_scheduler.get_lr()
    for group, rate in zip(lr_scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
