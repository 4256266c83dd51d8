from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from ignite.engine import Engine, Events

from medunet.handlers import ResumableMLFlowHandler
from tests.conftest import mlflow_runs


def _process(
    uri: str, epochs: int, params: dict | None = None, start_epoch: int = 0
) -> tuple[Engine, ResumableMLFlowHandler]:
    """One training process: an engine whose loss is the iteration number, with the handler attached."""
    engine = Engine(lambda e, batch: {"loss": float(e.state.iteration)})
    handler = ResumableMLFlowHandler(
        tracking_uri=uri,
        experiment_name="exp",
        run_name="job-run",
        experiment_param=params or {"epochs": epochs},
        iteration_log=True,
        epoch_log=False,
        tag_name="train_loss",
        output_transform=lambda out: out["loss"],
        close_on_complete=True,
    )
    handler.attach(engine)

    @engine.on(Events.STARTED)
    def _resume(e: Engine) -> None:
        e.state.iteration, e.state.epoch = start_epoch * 2, start_epoch

    return engine, handler


def test_kills_and_reruns_continue_one_run_and_log_each_step_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    engine, _ = _process(uri, 3)

    @engine.on(Events.ITERATION_COMPLETED(once=3))
    def _kill(e: Engine) -> None:  # the process dies in epoch 2 (iterations 1-2 are epoch 1)
        raise SystemExit("killed")

    with pytest.raises(SystemExit):
        engine.run([0, 1], max_epochs=3)
    [run] = mlflow_runs(uri)
    assert run.info.status == "RUNNING"  # a process that dies leaves its run open

    engine, _ = _process(uri, 3, start_epoch=1)  # resumed from the checkpoint of epoch 1
    engine.run([0, 1], max_epochs=3)
    [run] = mlflow_runs(uri)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]  # step 3 (logged before the kill) not logged again
    assert run.info.status == "FINISHED"

    engine, _ = _process(uri, 4, start_epoch=3)  # the finished training extended by one epoch
    engine.run([0, 1], max_epochs=4)
    runs = mlflow_runs(uri)
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert client.get_run(run.info.run_id).data.params["epochs"] == "3"
    assert client.get_run(run.info.run_id).data.tags["resumed.epochs"] == "4"
