"""Running a bundle's trainer: optimiser choice, resume from the latest checkpoint, checkpoint checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from medunet.engines import check_checkpoint, make_optimizer, resume_handler, run_training
from medunet.handlers.checkpoint import atomic_save, epoch_checkpoint_name


def test_make_optimizer_by_name_and_unknown_name() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    sgd = make_optimizer("SGD", params, 0.1)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.99
    assert isinstance(make_optimizer("adam", params, 0.1), torch.optim.Adam)
    with pytest.raises(ValueError, match=r"optimizer_name='lbfgs' is not supported; valid options are 'sgd', 'adam'"):
        make_optimizer("lbfgs", params, 0.1)


def test_resume_handler_picks_the_newest_epoch(tmp_path: Path) -> None:
    assert resume_handler(tmp_path, {}) is None
    model = torch.nn.Linear(1, 1)
    for epoch in (2, 10, 9):
        atomic_save({"model": model.state_dict()}, tmp_path / epoch_checkpoint_name(epoch))
    loader = resume_handler(tmp_path, {"model": model})
    assert loader is not None
    assert Path(loader.load_path).name == "checkpoint_epoch=10.pt"  # numeric, not lexical order
    assert resume_handler(tmp_path, {"model": model}, resume=False) is None


def test_run_training_attaches_handlers_and_skips_disabled_ones() -> None:
    trainer = Engine(lambda engine, batch: None)
    trainer.state.max_epochs = None
    seen: list[str] = []

    class Recorder:
        def attach(self, engine: Engine) -> None:
            engine.add_event_handler(Events.COMPLETED, lambda _: seen.append("completed"))

    trainer.run = lambda: trainer.fire_event(Events.COMPLETED)  # type: ignore[method-assign]
    run_training(trainer, [None, Recorder()])
    assert seen == ["completed"]


def test_check_checkpoint_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist; train first"):
        check_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "ok.pt").write_bytes(b"x")
    assert check_checkpoint(tmp_path / "ok.pt") == str(tmp_path / "ok.pt")
