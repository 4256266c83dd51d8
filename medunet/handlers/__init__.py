"""Ignite handlers that MONAI does not have: MLflow model/artifact logging, validation snapshots."""

from medunet.handlers.mlflow_artifacts import MLflowArtifactsHandler
from medunet.handlers.mlflow_resumable import ResumableMLFlowHandler
from medunet.handlers.snapshot import ValidationSnapshot

__all__ = ["MLflowArtifactsHandler", "ResumableMLFlowHandler", "ValidationSnapshot"]
