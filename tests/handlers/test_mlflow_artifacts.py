"""The artifacts handler logs the model into the run of MONAI's MLflow handler and leaves the process's MLflow
settings as they were, so that a later training in the same process logs where it is told to."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MLFlowHandler

from medunet.handlers import MLflowArtifactsHandler
from tests.conftest import mlflow_runs


def _train(uri: str, output_dir: Path) -> None:
    """One epoch of a trainer with MONAI's MLflow handler and the artifacts handler (attached first, as the bundles
    do), logging the model."""
    engine = Engine(lambda e, batch: {"loss": float(e.state.iteration)})
    tracking = MLFlowHandler(tracking_uri=uri, experiment_name="exp", run_name="run", close_on_complete=True,
                             output_transform=lambda out: out["loss"])  # fmt: skip
    output_dir.mkdir()
    MLflowArtifactsHandler(tracking, torch.nn.Conv2d(1, 2, 1), output_dir, example_shape=(1, 1, 4, 4)).attach(engine)
    tracking.attach(engine)
    engine.run([0, 1], max_epochs=1)


def test_two_trainings_in_one_process_log_to_their_own_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    _train(first, tmp_path / "one")
    # MONAI's MLFlowHandler prefers this variable to its tracking_uri: mlflow.set_tracking_uri (which log_model
    # needs) writes it, and the handler puts it back as it was
    assert "MLFLOW_TRACKING_URI" not in os.environ
    _train(second, tmp_path / "two")
    [one], [two] = mlflow_runs(first), mlflow_runs(second)
    for uri, run in ((first, one), (second, two)):
        artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run.info.run_id)}
        models = mlflow.MlflowClient(uri).search_logged_models([run.info.experiment_id])
        assert models or "model" in artifacts, (uri, artifacts)  # the model is logged into that run's store
