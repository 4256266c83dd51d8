"""MONAI's ``MLFlowHandler`` made safe for resumed runs."""

from __future__ import annotations

import logging
from typing import Any

from monai.handlers import MLFlowHandler

__all__ = ["ResumableMLFlowHandler"]

logger = logging.getLogger(__name__)


class ResumableMLFlowHandler(MLFlowHandler):
    """``MLFlowHandler`` whose parameters can be logged again into a resumed run.

    A run resumed after an interruption continues the same MLflow run (same ``run_name``), and MLflow
    refuses to change a logged parameter. Parameters already logged with the same value are skipped; a
    changed one (e.g. ``epochs`` raised on resume) is recorded as the tag ``resumed.<name>`` with a warning,
    and the original value stays the run's parameter.
    """

    def _log_params(self, params: dict[str, Any]) -> None:
        if not self.cur_run:
            raise ValueError("Current Run is not Active to log params")
        logged = self.client.get_run(self.cur_run.info.run_id).data.params
        fresh = {k: v for k, v in params.items() if k not in logged}
        for key, value in params.items():
            if key in logged and logged[key] != str(value):
                logger.warning(
                    "parameter %s changed on resume (%s -> %s); recorded as tag resumed.%s",
                    key,
                    logged[key],
                    value,
                    key,
                )
                self.client.set_tag(self.cur_run.info.run_id, f"resumed.{key}", str(value))
        if fresh:
            super()._log_params(fresh)
