"""Runs ``python -m monai.bundle <args>`` and kills it with SIGKILL (its whole process group, data loader workers
included) at a chosen moment, for the crash tests:

    python -m tests.bundles.kill_at checkpoint N <bundle args>   # halfway through writing the N-th torch.save
    python -m tests.bundles.kill_at mlflow N <bundle args>       # after the first metric of the N-th MLflow batch
    python -m tests.bundles.kill_at seconds S <bundle args>      # S seconds after the training starts

Start it in a new session (``start_new_session=True``): the kill takes the process group.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import sys
import threading
import time
from typing import Any


def die() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def kill_in_checkpoint_write(n: int) -> None:
    import torch

    real, calls = torch.save, [0]

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == n and hasattr(f, "write"):
            buffer = io.BytesIO()
            real(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: buffer.tell() // 2])
            f.flush()
            die()
        real(obj, f, *args, **kwargs)

    torch.save = save


def kill_in_mlflow_logging(n: int) -> None:
    from mlflow.tracking import MlflowClient

    real, calls = MlflowClient.log_batch, [0]

    def log_batch(
        self: MlflowClient, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any
    ) -> Any:
        if metrics:
            calls[0] += 1
            if calls[0] == n:
                real(self, run_id, metrics=list(metrics)[:1], params=[], tags=[])
                die()
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    MlflowClient.log_batch = log_batch  # type: ignore[method-assign]


def kill_after(seconds: float) -> None:
    """Starts the clock when the training starts (``run_training``), not at import: start-up time varies."""
    import medunet.engines
    import medunet.engines.run

    real = medunet.engines.run.run_training

    def run_training(*args: Any, **kwargs: Any) -> None:
        threading.Thread(target=lambda: (time.sleep(seconds), die()), daemon=True).start()
        real(*args, **kwargs)

    medunet.engines.run_training = medunet.engines.run.run_training = run_training


if __name__ == "__main__":
    moment, value, bundle_args = sys.argv[1], sys.argv[2], sys.argv[3:]
    {"checkpoint": lambda: kill_in_checkpoint_write(int(value)),
     "mlflow": lambda: kill_in_mlflow_logging(int(value)),
     "seconds": lambda: kill_after(float(value))}[moment]()  # fmt: skip
    sys.argv = ["monai.bundle", *bundle_args]
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
