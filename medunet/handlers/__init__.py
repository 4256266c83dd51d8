"""Ignite handlers that MONAI does not have: MLflow model/artifact logging, validation snapshots."""

from medunet.handlers.audit import RankAudit
from medunet.handlers.checkpoint import AtomicCheckpointSaver, atomic_save
from medunet.handlers.mlflow_artifacts import MLflowArtifactsHandler
from medunet.handlers.mlflow_resumable import ResumableMLFlowHandler
from medunet.handlers.snapshot import ValidationSnapshot

__all__ = [
    "AtomicCheckpointSaver",
    "MLflowArtifactsHandler",
    "RankAudit",
    "ResumableMLFlowHandler",
    "ValidationSnapshot",
    "atomic_save",
]
