"""Wiring used by the bundles: batch preparation, data lists, optimiser, checkpoints, run bookkeeping."""

from medunet.engines.checkpoints import RNGState, best_checkpoint, latest_checkpoint
from medunet.engines.data import inference_datalist, resolve_datalist
from medunet.engines.prepare_batch import ValidOutputPrepareBatch
from medunet.engines.run import (
    check_checkpoint,
    gather_inference_summary,
    make_optimizer,
    resume_handler,
    resync_learning_rate,
    run_training,
)
from medunet.engines.tracking import code_version, default_tracking_uri, experiment_params, write_run_config

__all__ = [
    "RNGState",
    "ValidOutputPrepareBatch",
    "best_checkpoint",
    "check_checkpoint",
    "code_version",
    "default_tracking_uri",
    "experiment_params",
    "gather_inference_summary",
    "inference_datalist",
    "latest_checkpoint",
    "make_optimizer",
    "resolve_datalist",
    "resume_handler",
    "resync_learning_rate",
    "run_training",
    "write_run_config",
]
