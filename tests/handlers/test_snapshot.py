"""The validation snapshot: a PNG of the first validation case per run."""

from __future__ import annotations

from pathlib import Path

import torch
from ignite.engine import Engine

from medunet.handlers import ValidationSnapshot


def test_snapshot_written_on_the_first_iteration_of_each_run(tmp_path: Path) -> None:
    engine = Engine(lambda e, b: None)
    snapshot = ValidationSnapshot(tmp_path)
    case = {"image": torch.rand(1, 20, 20), "pred": torch.zeros(2, 20, 20), "label": torch.ones(1, 20, 20)}
    engine.state.epoch_length, engine.state.output = 3, [case]
    engine.state.iteration = 2  # not the first of the run
    snapshot(engine)
    assert not (tmp_path / "val_overlay.png").exists()
    engine.state.iteration = 4  # first iteration of the second run
    snapshot(engine)
    assert (tmp_path / "val_overlay.png").is_file()


def test_snapshot_of_a_batched_output_and_outputs_without_images(tmp_path: Path) -> None:
    engine = Engine(lambda e, b: None)
    engine.state.epoch_length, engine.state.iteration = 1, 1
    engine.state.output = {"image": torch.rand(2, 1, 8, 8, 4), "pred": torch.zeros(2, 2, 8, 8, 4)}
    ValidationSnapshot(tmp_path, "batched.png")(engine)
    assert (tmp_path / "batched.png").is_file()
    engine.state.output = {"loss": 1.0}
    ValidationSnapshot(tmp_path, "none.png")(engine)
    assert not (tmp_path / "none.png").exists()
