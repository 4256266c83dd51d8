"""Inference over many cases that survives a bad one: a case that cannot be loaded, segmented or written is
recorded and the batch goes on; the end of the run lists each case's outcome and fails when any failed.

MONAI's ``Dataset`` and ``SupervisedEvaluator`` stop the whole run at the first exception, so one unreadable
series in a study folder left every later case without output. :class:`CaseDataset` turns a loading error into
a marker, :class:`CaseEvaluator` passes over markers and catches errors of the later steps, and
:class:`~medunet.handlers.CaseProgress` reports and records the outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.data import Dataset
from monai.engines import SupervisedEvaluator

from medunet.handlers.progress import CASE_ERROR, CASE_FAILED

__all__ = ["CaseDataset", "CaseEvaluator", "transform_error"]

logger = logging.getLogger(__name__)


def transform_error(err: BaseException) -> BaseException:
    """The error a transform raised: MONAI's Compose wraps it in RuntimeErrors, and medunet's own message (the
    file, what is wrong, the fix) is the innermost one."""
    while isinstance(err, RuntimeError) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _name_of(case: Any) -> str:
    source = case.get("image") if isinstance(case, Mapping) else case
    return Path(str(source)).name


class CaseDataset(Dataset):
    """MONAI's ``Dataset`` whose item is a failure marker ``{CASE_FAILED: name, CASE_ERROR: message}`` when the
    transform raises for that case (an unreadable file, a bad series), instead of stopping the run."""

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as err:
            cause = transform_error(err)
            message = f"{type(cause).__name__}: {cause}"
            logger.error("case %s cannot be loaded: %s", _name_of(self.data[index]), message)
            return {CASE_FAILED: _name_of(self.data[index]), CASE_ERROR: message}


class CaseEvaluator(SupervisedEvaluator):
    """MONAI's ``SupervisedEvaluator`` (same arguments) for inference over many cases: a failure marker from
    :class:`CaseDataset` is passed over, and an error while segmenting or writing one case is recorded as that
    case's failure; the other cases go on."""

    def _iteration(self, engine: Any, batchdata: dict[str, Any]) -> dict[str, Any]:
        if isinstance(batchdata, Mapping) and CASE_FAILED in batchdata:
            return {CASE_FAILED: _first(batchdata[CASE_FAILED]), CASE_ERROR: _first(batchdata[CASE_ERROR])}
        try:
            return super()._iteration(engine, batchdata)
        except Exception as err:
            image = batchdata.get("image") if isinstance(batchdata, Mapping) else None
            source = getattr(image, "meta", {}).get("filename_or_obj", "?")
            name = Path(str(_first(source))).name
            cause = transform_error(err)
            logger.error("case %s failed: %s: %s", name, type(cause).__name__, cause)
            return {CASE_FAILED: name, CASE_ERROR: f"{type(cause).__name__}: {cause}"}


def _first(value: Any) -> Any:
    """The single element of a collated batch of one."""
    return value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
