"""MONAI's ``MLFlowHandler`` made safe for resumed runs."""

from __future__ import annotations

import logging
from typing import Any

from monai.handlers import MLFlowHandler

__all__ = ["ResumableMLFlowHandler"]

logger = logging.getLogger(__name__)


class ResumableMLFlowHandler(MLFlowHandler):
    """``MLFlowHandler`` that continues one MLflow run across interruptions.

    - **One run per name**: the newest run of the experiment with ``run_name`` is continued whatever its
      status (a killed process leaves it RUNNING, a finished one is FINISHED and set RUNNING again when the
      training is extended); a run is created only when none has that name. MONAI's handler skips finished
      runs and picks the oldest of several active ones, so kills and reruns left several runs of one name.
    - **No step logged twice**: a metric is not logged again at a step it already has in the run (the epoch a
      killed run was in is trained again on resume, and with :class:`~medunet.engines.EpochSeed` trained
      identically, so the values logged before the kill stand).
    - **Parameters**: MLflow refuses to change a logged parameter. Parameters already logged with the same
      value are skipped; a changed one (e.g. ``epochs`` raised on resume) is recorded as the tag
      ``resumed.<name>`` with a warning, and the original value stays the run's parameter.
    """

    _last_steps: dict[str, int] | None = None

    def start(self, engine: Any) -> None:
        if not self.cur_run and self.run_name:
            self._set_experiment()
            if self.experiment is not None:
                runs = self.client.search_runs(
                    [self.experiment.experiment_id],
                    filter_string=f"attributes.run_name = '{self.run_name}'",
                    order_by=["attributes.start_time DESC"],
                    max_results=1,
                )
                if runs:
                    run = runs[0]
                    if run.info.status != "RUNNING":
                        self.client.update_run(run.info.run_id, status="RUNNING")
                    self.cur_run = self.client.get_run(run.info.run_id)
        super().start(engine)
        if self.cur_run and self._last_steps is None:
            run_id = self.cur_run.info.run_id
            self._last_steps = {
                key: max(m.step for m in self.client.get_metric_history(run_id, key))
                for key in self.client.get_run(run_id).data.metrics
            }

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        last = self._last_steps or {}
        fresh = {k: v for k, v in metrics.items() if (step or 0) > last.get(k, -1)}
        if fresh:
            super()._log_metrics(fresh, step)
            if self._last_steps is not None:
                self._last_steps.update(dict.fromkeys(fresh, step or 0))

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
