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

__all__ = ["blockwise_bundle", "refuse_resampling", "run_bundle_blockwise"]


def blockwise_bundle(
    bundle_dir: str | Path, checkpoint: str | Path, settings: dict[str, Any] | None = None
) -> ConfigParser:
    """The parser of the bundle's inference and blockwise configs with ``settings`` (e.g. ``input_volume``,
    ``output_volume``), checked (:func:`medunet.engines.check_settings`; a bundle that resamples is refused:
    :func:`refuse_resampling`)."""
    parser = inference_bundle(bundle_dir, checkpoint, settings, configs=("inference.json", "blockwise.json"))
    refuse_resampling(parser.get_parsed_content("spacing", default=None))
    return parser


def refuse_resampling(spacing: Any) -> None:
    """Blockwise runs predict on the volume's own voxel grid; a bundle that resamples its input (its ``spacing``
    setting, as brain_tumour_mr's 1 x 1 x 6.5 mm) would see voxels of another size than in training. Raises
    ``ValueError`` saying what to do; ``spacing`` null passes."""
    if spacing is None:
        return
    raise ValueError(
        f"this bundle resamples its input to spacing {list(spacing)} mm, which blockwise runs do not do (they predict "
        "on the volume's own voxel grid, block by block). Resample the volume to that spacing first and run "
        "blockwise with spacing null (medunet blockwise ... --override spacing=null), or use the bundle's in-memory "
        "inference (medunet segment), which resamples and maps the result back."
    )


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
