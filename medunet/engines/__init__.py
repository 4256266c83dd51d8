"""Wiring used by the bundles: batch preparation, data lists, optimiser and schedule, resume, run bookkeeping
(MLflow), the ``torchrun`` set-up, and the small functions the configs call instead of ``$`` logic."""

from medunet.engines.cases import CaseDataset, CaseEvaluator
from medunet.engines.data import inference_datalist, resolve_datalist, study_datalist
from medunet.engines.distributed import (
    default_device,
    distributed_model,
    finish_distributed,
    gather_inference_summary,
    init_distributed,
    is_not_rank0,
    process_rank,
    run_inference_shard,
    world_size,
)
from medunet.engines.prepare_batch import ValidOutputPrepareBatch
from medunet.engines.rng_state import EpochSeed, RNGState, epoch_seed
from medunet.engines.run import check_checkpoint, make_optimizer, resume_handler, run_training
from medunet.engines.schedules import poly_lr_scheduler, resync_learning_rate
from medunet.engines.settings import SETTINGS, SettingsError, check_settings, resolve_device
from medunet.engines.tracking import code_version, default_tracking_uri, experiment_params, write_run_config
from medunet.engines.wiring import (
    active,
    amp_default,
    bundle_root,
    channels_last_default,
    cuda_amp,
    image_meta,
    place_network,
    run_name,
    saved_label_scale,
    weight_map_source,
)
from medunet.handlers.checkpoint import best_checkpoint, best_checkpoint_path, latest_checkpoint

__all__ = [
    "SETTINGS",
    "CaseDataset",
    "CaseEvaluator",
    "EpochSeed",
    "RNGState",
    "SettingsError",
    "ValidOutputPrepareBatch",
    "active",
    "amp_default",
    "best_checkpoint",
    "best_checkpoint_path",
    "bundle_root",
    "channels_last_default",
    "check_checkpoint",
    "check_settings",
    "code_version",
    "cuda_amp",
    "default_device",
    "default_tracking_uri",
    "distributed_model",
    "epoch_seed",
    "experiment_params",
    "finish_distributed",
    "gather_inference_summary",
    "image_meta",
    "inference_datalist",
    "init_distributed",
    "is_not_rank0",
    "latest_checkpoint",
    "make_optimizer",
    "place_network",
    "poly_lr_scheduler",
    "process_rank",
    "resolve_datalist",
    "resolve_device",
    "resume_handler",
    "resync_learning_rate",
    "run_inference_shard",
    "run_name",
    "run_training",
    "saved_label_scale",
    "study_datalist",
    "weight_map_source",
    "world_size",
    "write_run_config",
]
