"""The bundles' polynomial LR schedule and its re-synchronisation on resume."""

from __future__ import annotations

import pytest
import torch

from medunet.engines import poly_lr_scheduler, resync_learning_rate


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_poly_schedule_decays_to_zero_at_the_last_epoch() -> None:
    optimizer = _optimizer()
    scheduler = poly_lr_scheduler(optimizer, epochs=4)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1 * (1 - e / 4) ** 0.9 for e in range(5)])
    assert rates[-1] == 0.0
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        poly_lr_scheduler(optimizer, epochs=0)


def test_schedule_state_does_not_carry_the_epoch_count() -> None:
    """The factor is a plain function: a checkpoint of a 2-epoch run must not impose 2 epochs on a resume."""
    state = poly_lr_scheduler(_optimizer(), epochs=2).state_dict()
    assert state["lr_lambdas"] == [None]
    assert "2" not in str(state["lr_lambdas"])


def test_resumed_schedule_follows_a_raised_epoch_count() -> None:
    """A run trained 2 of 2 epochs (rate decayed to 0) and resumed with epochs=4 must train again."""
    optimizer = _optimizer()
    scheduler = poly_lr_scheduler(optimizer, epochs=4)
    scheduler.load_state_dict({"base_lrs": [0.1], "last_epoch": 2, "_step_count": 3, "lr_lambdas": [None]})
    optimizer.param_groups[0]["lr"] = 0.0  # what the checkpoint of the 2-epoch run restored
    resync_learning_rate(scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)
