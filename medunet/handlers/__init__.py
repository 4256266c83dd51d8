"""Ignite handlers that MONAI does not have: atomic checkpoints (and their file names), MLflow runs that survive a
resume, MLflow model/artifact logging, validation snapshots, a per-rank audit of distributed runs, inference
progress."""

from medunet.handlers.audit import RankAudit
from medunet.handlers.checkpoint import (
    AtomicCheckpointSaver,
    CheckpointLoader,
    atomic_save,
    best_checkpoint,
    latest_checkpoint,
)
from medunet.handlers.mlflow_artifacts import MLflowArtifactsHandler
from medunet.handlers.mlflow_resumable import ResumableMLFlowHandler
from medunet.handlers.progress import CaseProgress
from medunet.handlers.snapshot import ValidationSnapshot

__all__ = [
    "AtomicCheckpointSaver",
    "CaseProgress",
    "CheckpointLoader",
    "MLflowArtifactsHandler",
    "RankAudit",
    "ResumableMLFlowHandler",
    "ValidationSnapshot",
    "atomic_save",
    "best_checkpoint",
    "latest_checkpoint",
]
