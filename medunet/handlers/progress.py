"""Progress of an inference over many cases: one line per case (its position, name and time), the outcome of
each case in ``<output_dir>/cases.json``, and an error at the end naming the cases that failed."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from medunet.utils.files import atomic_write_json

__all__ = ["CASE_ERROR", "CASE_FAILED", "CaseProgress"]

CASE_FAILED = "medunet_failed_case"
"""Key of the failure marker an inference output holds for a case that failed (its name), with
:data:`CASE_ERROR` (the message); see :class:`medunet.engines.CaseEvaluator`."""
CASE_ERROR = "medunet_case_error"

logger = logging.getLogger(__name__)


def _case_name(output: Any) -> str:
    """The input file (or series folder) name of the first case in an evaluator's output, ``"?"`` if unknown."""
    first = output[0] if isinstance(output, list) and output else output
    if isinstance(first, dict):
        for value in first.values():
            source = getattr(value, "meta", {}).get("filename_or_obj")
            if source:
                source = source[0] if isinstance(source, (list, tuple)) else source
                return Path(str(source)).name
    return "?"


class CaseProgress:
    """Logs ``case i of n: <name> (t s)`` (or ``... FAILED: <error>``) after every iteration of an inference
    (batch size 1: one case) and ``n cases in t s`` at the end. With ``output_dir``, writes each case's outcome to
    ``<output_dir>/cases.json`` and, when any case failed, ends the run with a ``RuntimeError`` naming them (the
    other cases' outputs are written), so the command's exit status says so."""

    def __init__(self, output_dir: str | Path | None = None) -> None:
        self.output_dir = Path(output_dir) if output_dir else None
        self.cases: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._case_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._case_done)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, _: Engine) -> None:
        self._start = time.perf_counter()
        self.cases = []

    def _case_started(self, _: Engine) -> None:
        self._case_start = time.perf_counter()

    def _case_done(self, engine: Engine) -> None:
        total = engine.state.epoch_length
        seconds = time.perf_counter() - self._case_start
        output = engine.state.output
        failed = isinstance(output, dict) and CASE_FAILED in output
        name = str(output[CASE_FAILED]) if failed else _case_name(output)  # type: ignore[index]
        position = f"case {engine.state.iteration} of {total if total is not None else '?'}: {name}"
        if failed:
            error = str(output[CASE_ERROR])  # type: ignore[index]
            logger.error("%s FAILED: %s", position, error)
            self.cases.append({"case": name, "status": "failed", "error": error, "seconds": round(seconds, 2)})
        else:
            logger.info("%s (%.1f s)", position, seconds)
            self.cases.append({"case": name, "status": "ok", "seconds": round(seconds, 2)})

    def _completed(self, engine: Engine) -> None:
        failed = [c for c in self.cases if c["status"] == "failed"]
        logger.info(
            "%d cases in %.1f s%s",
            engine.state.iteration,
            time.perf_counter() - self._start,
            f", {len(failed)} failed" if failed else "",
        )
        if self.output_dir is None:
            return
        # one file per process under torchrun (the ranks segment disjoint cases into the same folder)
        rank = os.environ.get("RANK", "0") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
        summary = self.output_dir / ("cases.json" if rank is None else f"cases_rank{rank}.json")
        atomic_write_json(summary, {"cases": self.cases, "failed": len(failed)}, indent=2)
        if failed:
            names = "; ".join(f"{c['case']} ({c['error']})" for c in failed)
            raise RuntimeError(
                f"{len(failed)} of {len(self.cases)} cases failed: {names}. The other cases' outputs are in "
                f"{self.output_dir}; each case's outcome is in {summary}"
            )
