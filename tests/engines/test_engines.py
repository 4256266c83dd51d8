"""Batch preparation, data lists, random-state checkpoints, run config, label rules, atomic saves."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from medunet.data.datasets import make_default_dataset
from medunet.engines import (
    RNGState,
    ValidOutputPrepareBatch,
    inference_datalist,
    make_optimizer,
    resolve_datalist,
    write_run_config,
)
from medunet.handlers import AtomicCheckpointSaver
from medunet.networks import UNetGeometry
from medunet.transforms import label_to_classes


def test_prepare_batch_crops_and_stacks_weights() -> None:
    geometry = UNetGeometry.create(2, 3)
    batch = {
        "image": torch.zeros(2, 1, 60, 76),
        "label": torch.ones(2, 1, 60, 76),
        "weight": torch.full((2, 1, 60, 76), 3.0),
    }
    image, target = ValidOutputPrepareBatch(geometry)(batch)
    assert image.shape == (2, 1, 60, 76)
    assert target.shape == (2, 2, *geometry.output_shape((60, 76)))
    assert float(target[:, 1].min()) == 3.0
    cropped = {"image": batch["image"], "label": torch.ones(2, 1, 28, 44)}
    assert ValidOutputPrepareBatch(geometry)(cropped)[1].shape == (2, 1, 28, 44)


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path: Path) -> None:
    state = RNGState()
    torch.save({"rng": state.state_dict()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    state.load_state_dict(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected  # noqa: NPY002


def test_resolve_datalist_default_and_errors(tmp_path: Path) -> None:
    datalist = resolve_datalist("", tmp_path / "out", 2, {"n_training": 2, "n_validation": 1, "shape": [32, 32]})
    assert len(datalist["training"]) == 2
    assert Path(datalist["training"][0]["image"]).is_absolute()
    listing = make_default_dataset(tmp_path / "mine", n_training=1, n_validation=0, shape=(32, 32))
    again = resolve_datalist(listing.parent, tmp_path / "out2")
    assert again["validation"] == again["training"]  # no validation list: validate on the training cases
    with pytest.raises(FileNotFoundError, match=r"no dataset\.json there"):
        resolve_datalist(tmp_path / "nothing", tmp_path / "out3")
    with pytest.raises(ValueError, match="optimizer_name='lbfgs' is not supported"):
        make_optimizer("lbfgs", [torch.nn.Parameter(torch.zeros(1))], 0.1)


def test_run_config_merges_files_and_overrides(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"epochs": 5, "net": {"features": [1, 2]}}))
    b.write_text(json.dumps({"epochs": 2}))
    argv = [
        "run",
        "training",
        "--config_file",
        f"['{a}','{b}']",
        "--output_dir",
        str(tmp_path / "o"),
        "--net#features",
        "[3, 4]",
        "--tracking",
        "mlflow",
    ]
    path = write_run_config(tmp_path / "o", argv)
    assert path is not None
    merged = json.loads(Path(path).read_text())
    assert merged["config"]["epochs"] == 2
    assert merged["config"]["net"]["features"] == [3, 4]
    assert "tracking" not in merged["overrides"]
    assert write_run_config(tmp_path / "o", ["run"]) is None


def test_label_rules_and_unexpected_values() -> None:
    assert label_to_classes(np.array([[0, 255], [255, 0]]), "threshold").tolist() == [[0, 1], [1, 0]]
    inst = np.array([[1, 1, 2, 2]])
    assert label_to_classes(inst, "instances").tolist() == [[1, 1, 0, 1]]  # touching border carved
    with pytest.raises(ValueError, match=r"label values \[255\] are outside the classes 0..1"):
        label_to_classes(np.array([[0, 255]]), "classes")
    with pytest.raises(ValueError, match="non-integer or NaN"):
        label_to_classes(np.array([[0.0, np.nan]]), "classes")
    with pytest.raises(ValueError, match="label_rule='otsu' is not supported"):
        label_to_classes(np.zeros((2, 2)), "otsu")


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


def test_inference_datalist(tmp_path: Path) -> None:
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [Path(c["image"]).name for c in inference_datalist(tmp_path)] == ["a.nii.gz", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no NIfTI"):
        inference_datalist(empty)


def test_resumed_schedule_follows_a_raised_epoch_count() -> None:
    """A run trained 2 of 2 epochs (rate decayed to 0) and resumed with epochs=4 must train again."""
    from medunet.engines import resync_learning_rate

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    epochs = 4
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(1.0 - e / epochs, 0.0) ** 0.9)
    scheduler.load_state_dict({"base_lrs": [0.1], "last_epoch": 2, "_step_count": 3, "lr_lambdas": [None]})
    optimizer.param_groups[0]["lr"] = 0.0  # what the checkpoint of the 2-epoch run restored
    resync_learning_rate(scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)
