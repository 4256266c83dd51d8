"""Segmentation without training: a shipped model (a bundle of ``bundles/`` with its weights) or any bundle folder
applied to an image, a folder of images or DICOM series, or a volume larger than memory (``medunet segment``).

Every image gets the bundle's outputs with instances, overlays and measurements switched on: class map, instance
labels, a PNG overlay, and the per-instance table (``<name>_instances.csv`` / ``.json``: area in pixels and in
physical units where the format has a pixel size, centroid, bounding box, mean intensity, mean probability).
Zarr / OME-Zarr inputs, and TIFF files of more than :data:`LARGE_PIXELS` pixels, go through the exact blockwise
path and become an OME-Zarr with its ``labels/instances`` image.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medunet.apps.blockwise import run_bundle_blockwise
from medunet.apps.segmenter import BundleSegmenter
from medunet.engines.data import inference_datalist
from medunet.io.image import IMAGE_SUFFIXES, NIFTI_SUFFIXES
from medunet.io.volumes import TIFF_SUFFIXES, is_volume_path, open_volume

__all__ = ["LARGE_PIXELS", "SegmentReport", "model_summary", "resolve_model", "segment", "shipped_models"]

logger = logging.getLogger(__name__)

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
"""Where the shipped models live: the bundles of the repository."""

LARGE_PIXELS = 64 * 1024 * 1024
"""TIFF images with more pixels than this (64 Mpx) are segmented blockwise, into an OME-Zarr."""

SEGMENT_SETTINGS = {"write_instances": True, "write_overlay": True, "write_measurements": True}
"""What ``medunet segment`` writes for every image, whatever the bundle's defaults."""


def shipped_models(root: Path = BUNDLES) -> dict[str, Path]:
    """The bundles under ``root`` that carry trained weights (``models/model.pt``), by name."""
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "models" / "model.pt").is_file()}


def model_summary(folder: Path) -> str:
    """The model card's one-line summary: the first line of text after the title of ``docs/README.md`` (else the
    description in ``configs/metadata.json``)."""
    card = folder / "docs" / "README.md"
    if card.is_file():
        for line in card.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                return line.strip()
    metadata = folder / "configs" / "metadata.json"
    if metadata.is_file():
        return str(json.loads(metadata.read_text(encoding="utf-8")).get("description", ""))
    return ""


def resolve_model(model: str | Path, checkpoint: str | Path | None = None, root: Path = BUNDLES) -> tuple[Path, Path]:
    """The bundle folder and the weights of ``model``: a shipped name, or a bundle folder (its ``models/model.pt``
    unless ``checkpoint`` is given).

    Raises:
        ValueError: neither a shipped model nor a bundle folder (the known models are listed).
        FileNotFoundError: the bundle has no weights and none were given.
    """
    known = shipped_models(root)
    if str(model) in known:
        folder = known[str(model)]
    elif (Path(model) / "configs" / "inference.json").is_file():
        folder = Path(model)
    else:
        names = ", ".join(known) or "none (no bundle in bundles/ carries models/model.pt)"
        raise ValueError(
            f"--model {model}: not a shipped model and not a bundle folder (one with configs/inference.json); "
            f"shipped models: {names}. `medunet segment --list` shows them with their summaries"
        )
    weights = Path(checkpoint) if checkpoint else folder / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} does not exist: the bundle {folder} has no trained weights; train it (its docs/README.md "
            "gives the command) or pass --checkpoint"
        )
    return folder, weights


@dataclass
class SegmentReport:
    """What a ``medunet segment`` run did: the outputs per input, and the seconds per megapixel of the in-memory
    images (preprocessing, network, post-processing and writing)."""

    model: str
    outputs: dict[str, list[str]] = field(default_factory=dict)
    megapixels: float = 0.0
    seconds: float = 0.0

    @property
    def seconds_per_megapixel(self) -> float | None:
        return self.seconds / self.megapixels if self.megapixels else None


def _is_large(path: Path) -> bool:
    if is_volume_path(path):
        return True
    if path.name.lower().endswith(TIFF_SUFFIXES):
        volume = open_volume(path)
        try:
            return math.prod(volume.spatial_shape) > LARGE_PIXELS
        finally:
            volume.close()
    return False


def _channel_series(folder: Path, settings: dict[str, Any]) -> list[str] | None:
    """The SeriesDescription patterns a multi-series model takes (its ``channel_series``), or None."""
    if "channel_series" in settings:
        return settings["channel_series"]
    config = json.loads((folder / "configs" / "inference.json").read_text())
    return config.get("channel_series")


def _cases(inputs: Path, channels: list[str] | None = None) -> Iterator[Path]:
    if not inputs.exists():
        raise FileNotFoundError(
            f"{inputs} does not exist; give an image, a folder of images or DICOM series, or a zarr"
        )
    if channels:  # a multi-series model: each DICOM study below the folder is one case
        if not inputs.is_dir():
            raise ValueError(
                f"{inputs}: this model reads a DICOM study's series {channels} (SeriesDescription patterns) as its "
                "channels; give the study's folder (or a folder of studies), not a file"
            )
        for case in inference_datalist(inputs, channels=channels):
            yield Path(case["image"])
        return
    if inputs.is_file() or is_volume_path(inputs):
        if inputs.is_file() and not inputs.name.lower().endswith(NIFTI_SUFFIXES + IMAGE_SUFFIXES):
            raise ValueError(
                f"{inputs}: not an image medunet reads (PNG, TIFF, JPEG, BMP, NIfTI); give such a file, a folder, "
                "a DICOM series folder or a zarr / OME-Zarr"
            )
        yield inputs
        return
    for case in inference_datalist(inputs):
        yield Path(case["image"])


def segment(
    model: str | Path,
    inputs: str | Path,
    output_dir: str | Path,
    checkpoint: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> SegmentReport:
    """Segments ``inputs`` (an image, a folder, or a volume larger than memory) with ``model`` into ``output_dir``.

    Args:
        model: a shipped model's name or a bundle folder.
        checkpoint: weights instead of the bundle's ``models/model.pt``.
        settings: further bundle settings (e.g. ``{"device": "cpu", "flip_axes": [0, 1]}``).
    """
    folder, weights = resolve_model(model, checkpoint)
    out = Path(output_dir)
    cases = list(_cases(Path(inputs), _channel_series(folder, settings or {})))
    report = SegmentReport(model=str(model))
    segmenter: BundleSegmenter | None = None
    chosen = {**SEGMENT_SETTINGS, **(settings or {})}
    iterator: Any = cases
    if progress and len(cases) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(cases, desc=f"medunet segment ({folder.name})", unit="image")
    for case in iterator:
        if _is_large(case):
            name = case.name.split(".")[0]
            target = out / f"{name}.ome.zarr"
            blockwise = {"input_volume": str(case), "output_volume": str(target), "write_volume_instances": True}
            result = run_bundle_blockwise(folder, weights, {**(settings or {}), **blockwise})
            report.outputs[str(case)] = [str(target)]
            logger.info("segmented %s blockwise: %s (%s instances)", case.name, target, result.instances)
            continue
        if segmenter is None:
            segmenter = BundleSegmenter(folder, weights, chosen)
        start = time.perf_counter()
        written = segmenter.segment(case, out)
        report.seconds += time.perf_counter() - start
        if segmenter.last_shape:
            report.megapixels += math.prod(segmenter.last_shape) / 1e6
        report.outputs[str(case)] = [str(p) for p in written]
    return report
