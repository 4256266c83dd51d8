"""A bundle's blockwise run, assembled once: ``configs/inference.json`` + ``configs/blockwise.json`` + the user's
settings. ``python -m monai.bundle run`` with those two files and ``medunet blockwise`` (which only turns its flags
into these settings) both run the bundle's ``blockwise_report``, so they plan the same tiles as the bundle's
in-memory inference (its ``output_tile``) and write the same output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from medunet.apps.blockwise.job import BlockwiseReport
from medunet.apps.segmenter import inference_bundle
from medunet.engines.cases import transform_error

__all__ = ["blockwise_bundle", "run_bundle_blockwise"]


def blockwise_bundle(
    bundle_dir: str | Path, checkpoint: str | Path, settings: dict[str, Any] | None = None
) -> ConfigParser:
    """The parser of the bundle's inference and blockwise configs with ``settings`` (e.g. ``input_volume``,
    ``output_volume``), checked (:func:`medunet.engines.check_settings`)."""
    return inference_bundle(bundle_dir, checkpoint, settings, configs=("inference.json", "blockwise.json"))


def run_bundle_blockwise(
    bundle_dir: str | Path, checkpoint: str | Path, settings: dict[str, Any] | None = None
) -> BlockwiseReport:
    """Runs the bundle's blockwise job (its ``blockwise_report``) with ``settings``; returns what the run did."""
    parser = blockwise_bundle(bundle_dir, checkpoint, settings)
    try:
        report = parser.get_parsed_content("blockwise_report")
    except RuntimeError as err:  # MONAI wraps what the run raised; medunet's own message is the innermost one
        cause = transform_error(err)
        if isinstance(cause, (ValueError, FileNotFoundError, TypeError)):
            raise cause from None
        raise
    assert isinstance(report, BlockwiseReport)
    return report
