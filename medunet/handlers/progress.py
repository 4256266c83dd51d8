"""Progress of an inference over many cases: one line per case (its position, name and time), and a summary."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["CaseProgress"]

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
    """Logs ``case i of n: <name> (t s)`` after every iteration of an inference (batch size 1: one case) and
    ``n cases in t s`` at the end, so a long batch shows where it is."""

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_STARTED, self._case_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._case_done)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, _: Engine) -> None:
        self._start = time.perf_counter()

    def _case_started(self, _: Engine) -> None:
        self._case_start = time.perf_counter()

    def _case_done(self, engine: Engine) -> None:
        total = engine.state.epoch_length
        logger.info(
            "case %d of %s: %s (%.1f s)",
            engine.state.iteration,
            total if total is not None else "?",
            _case_name(engine.state.output),
            time.perf_counter() - self._case_start,
        )

    def _completed(self, engine: Engine) -> None:
        logger.info("%d cases in %.1f s", engine.state.iteration, time.perf_counter() - self._start)
