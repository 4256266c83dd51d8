"""Atomic checkpoints (latest per epoch, best by the key metric) and the one definition of their names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from medunet.handlers import AtomicCheckpointSaver, atomic_save, best_checkpoint, latest_checkpoint
from medunet.handlers.checkpoint import epoch_checkpoint_name, epoch_checkpoints


def test_atomic_checkpoints_keep_latest_and_best(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    latest = AtomicCheckpointSaver(tmp_path, {"model": model}, n_saved=2)
    best = AtomicCheckpointSaver(tmp_path, {"model": model}, key_metric="dice")
    for epoch, dice in [(1, 0.5), (2, 0.7), (3, 0.6)]:
        engine.state.epoch = epoch
        engine.state.metrics = {"dice": dice}
        latest(engine)
        best(engine)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_epoch=*.pt")) == [
        "checkpoint_epoch=2.pt",
        "checkpoint_epoch=3.pt",
    ]
    assert json.loads((tmp_path / "best_model.json").read_text())["epoch"] == 2
    assert set(torch.load(tmp_path / "best_model.pt", weights_only=True)) == {"model"}
    assert not list(tmp_path.glob(".*tmp"))
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_epoch=3.pt")
    assert best_checkpoint(tmp_path) == str(tmp_path / "best_model.pt")


def test_min_mode_and_unknown_mode(tmp_path: Path) -> None:
    engine = Engine(lambda e, b: None)
    saver = AtomicCheckpointSaver(tmp_path, {"model": torch.nn.Linear(1, 1)}, key_metric="loss", mode="MIN")
    for epoch, loss in [(1, 0.5), (2, 0.7)]:
        engine.state.epoch, engine.state.metrics = epoch, {"loss": loss}
        saver(engine)
    assert json.loads((tmp_path / "best_model.json").read_text())["value"] == 0.5
    with pytest.raises(ValueError, match="mode='best' is not supported; valid options are 'max', 'min'"):
        AtomicCheckpointSaver(tmp_path, {}, key_metric="loss", mode="best")


def test_best_model_in_float16_loads_into_a_float32_network(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    engine = Engine(lambda e, b: None)
    engine.state.epoch, engine.state.metrics = 1, {"dice": 0.5}
    AtomicCheckpointSaver(tmp_path, {"model": model}, n_saved=1)(engine)
    AtomicCheckpointSaver(tmp_path, {"model": model}, key_metric="dice", weights_dtype="float16")(engine)
    best = torch.load(tmp_path / "best_model.pt", weights_only=True)["model"]
    assert best["0.weight"].dtype == torch.float16
    assert best["1.num_batches_tracked"].dtype == torch.int64, "integer buffers keep their dtype"
    resume = torch.load(tmp_path / epoch_checkpoint_name(1), weights_only=True)["model"]
    assert resume["0.weight"].dtype == torch.float32, "the epoch checkpoint stays exact for resuming"
    copy = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    copy.load_state_dict(best)
    assert copy[0].weight.dtype == torch.float32
    torch.testing.assert_close(copy[0].weight, model[0].weight, rtol=1e-3, atol=1e-4)
    with pytest.raises(
        ValueError, match="weights_dtype='half' is not supported; valid options are 'float32', 'float16'"
    ):
        AtomicCheckpointSaver(tmp_path, {}, key_metric="dice", weights_dtype="half")


def test_names_are_parsed_numerically_and_strictly(tmp_path: Path) -> None:
    for name in [epoch_checkpoint_name(e) for e in (9, 10, 2)] + [
        "checkpoint_epoch=3.pt.bak",
        "xcheckpoint_epoch=4.pt",
    ]:
        (tmp_path / name).write_bytes(b"")
    assert [e for e, _ in epoch_checkpoints(tmp_path)] == [2, 9, 10]
    assert latest_checkpoint(tmp_path / "empty") is None
    assert best_checkpoint(tmp_path) is None


def test_failed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "best_model.pt"
    atomic_save({"v": torch.ones(1)}, target)

    class Unpicklable:
        def __reduce__(self) -> tuple[object, ...]:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"v": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["v"].tolist() == [1.0]
    assert sorted(os.listdir(tmp_path)) == ["best_model.pt"]


def test_checkpoint_epoch_reads_the_epoch_from_the_file_name(tmp_path: Path) -> None:
    from medunet.handlers.checkpoint import checkpoint_epoch, epoch_checkpoint_name

    assert checkpoint_epoch(tmp_path / epoch_checkpoint_name(12)) == 12
    assert checkpoint_epoch("best_model.pt") is None
    assert checkpoint_epoch("checkpoint_epoch=3.pt.tmp") is None
