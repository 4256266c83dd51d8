"""Logs what MONAI's ``MLFlowHandler`` does not: the model with a signature, the merged config, the best
checkpoint and the validation overlay, into the same MLflow run."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

import medunet
from medunet.handlers.checkpoint import best_checkpoint
from medunet.networks import load_weights

__all__ = ["MLflowArtifactsHandler"]

logger = logging.getLogger(__name__)


class MLflowArtifactsHandler:
    """At the end of training, logs artifacts and the model (MLflow's pytorch flavour) to the run that
    ``mlflow_handler`` (MONAI's ``MLFlowHandler``) opened.

    Attach it *before* that handler so it runs before the run is closed.

    Args:
        mlflow_handler: MONAI's handler on the same trainer (gives the tracking URI and run).
        network: the trained network; the best checkpoint's weights are loaded into a copy when present.
        output_dir: where the checkpoints, ``config_merged.json`` and ``val_overlay.png`` are.
        example_shape: input shape ``(B, C, *S)`` for the signature (a valid network input).
        artifacts: extra files to log.
    """

    def __init__(
        self,
        mlflow_handler: Any,
        network: torch.nn.Module,
        output_dir: str | Path,
        example_shape: Sequence[int],
        artifacts: Sequence[str | Path | None] = (),
        log_model: bool = True,
    ) -> None:
        self.mlflow_handler = mlflow_handler
        self.network = network
        self.output_dir = Path(output_dir)
        self.example_shape = tuple(int(s) for s in example_shape)
        self.artifacts = [Path(a) for a in artifacts if a]
        self.log_model = log_model

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        import mlflow
        from mlflow.models import infer_signature

        run = getattr(self.mlflow_handler, "cur_run", None)
        if run is None:
            logger.warning("no MLflow run is open; artifacts are not logged")
            return
        client = self.mlflow_handler.client
        run_id = run.info.run_id
        files = [*self.artifacts, self.output_dir / "config_merged.json", self.output_dir / "val_overlay.png"]
        best = best_checkpoint(self.output_dir)
        if best:
            files.append(Path(best))
        for f in files:
            if f.is_file():
                client.log_artifact(run_id, str(f))
        if not self.log_model:
            return
        model = copy.deepcopy(self.network).cpu().eval()
        if best:
            load_weights(model, best)
        example = torch.zeros(self.example_shape)
        with torch.inference_mode():
            output = model(example)
        signature = infer_signature(example.numpy(), output.numpy())
        # Explicit requirements: MLflow's inference of them re-imports the model and takes seconds.
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"medunet=={medunet.__version__}"]
        kwargs = {
            "name": "model",
            "signature": signature,
            "input_example": example.numpy(),
            "pip_requirements": requirements,
        }
        with _tracking_uri(self.mlflow_handler.client.tracking_uri), mlflow.start_run(run_id=run_id):
            # MLflow 3's default format is a torch.export program ("pt2"); the pickled module is the fallback.
            for extra in ({}, {"serialization_format": "pickle"}):
                try:
                    mlflow.pytorch.log_model(model, **kwargs, **extra)
                    return
                except Exception as err:
                    if extra:
                        raise
                    logger.warning("torch.export of the model failed (%s); logging the pickled module instead", err)


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's tracking URI for the calls inside only (its fluent API, which ``log_model`` needs, has no other way
    to be told). ``mlflow.set_tracking_uri`` also writes the ``MLFLOW_TRACKING_URI`` environment variable, which
    MONAI's ``MLFlowHandler`` prefers to its own ``tracking_uri``: left set, every later training in this process
    would log into this run's store."""
    import mlflow

    environment = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: unset again
        if environment is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = environment
