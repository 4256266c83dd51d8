"""Apply a bundle's inference pipeline to single cases, parsing the bundle once (for services)."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from medunet.engines.cases import transform_error
from medunet.engines.run import check_checkpoint
from medunet.engines.settings import check_settings
from medunet.networks import load_weights
from medunet.utils.files import atomic_move

__all__ = ["BundleSegmenter", "inference_bundle"]

logger = logging.getLogger(__name__)


def inference_bundle(
    bundle_dir: str | Path,
    checkpoint: str | Path,
    overrides: dict[str, Any] | None = None,
    configs: Sequence[str] = ("inference.json",),
) -> ConfigParser:
    """The parser of ``<bundle>/configs/inference.json`` (and further ``configs`` of the bundle, read in order, e.g.
    ``blockwise.json``), ``metadata.json`` and ``overrides``, its settings checked and converted
    (:func:`medunet.engines.check_settings`: errors name the bundle, the checkpoint or the setting). The input
    comes from the caller, so ``input_dir`` is not read."""
    folder = Path(bundle_dir) / "configs"
    for name in configs:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found; --bundle must be a medunet bundle folder")
    check_checkpoint(checkpoint)
    parser = ConfigParser()
    parser.read_config([str(folder / name) for name in configs])
    parser.read_meta(str(folder / "metadata.json"))
    parser.update({"bundle_root": str(bundle_dir), "ckpt_path": str(checkpoint), **(overrides or {})})
    check_settings(parser, unused=("input_dir", "ckpt_path"))  # the checkpoint was checked above
    return parser


def dicom_outputs(outputs: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The SEGs among a case's ``outputs``, and the objects that go to the PACS with them: the measurement report
    (SR) and, when the bundle writes them, the contours (RTSTRUCT)."""
    seg = [p for p in outputs if p.name.endswith("_seg.dcm")]
    reports = [p for p in outputs if p.name.endswith(("_sr.dcm", "_rtstruct.dcm"))]
    return seg, reports


class BundleSegmenter:
    """The network, preprocessing, inferer and postprocessing of ``<bundle>/configs/inference.json``.

    ``segment(case, output_dir)`` runs exactly what ``python -m monai.bundle run inference`` runs for one case
    (an image file or a DICOM series folder) and writes the same outputs (NIfTI, DICOM SEG for DICOM input,
    overlay PNG). Calls are serialised by a lock, so one segmenter can serve several threads.

    Args:
        bundle_dir: e.g. ``bundles/unet3d``.
        checkpoint: weights (``best_model.pt`` of a training run).
        overrides: config overrides, e.g. ``{"device": "cpu", "flip_axes": [0, 1]}``.
    """

    def __init__(self, bundle_dir: str | Path, checkpoint: str | Path, overrides: dict[str, Any] | None = None) -> None:
        # Outputs are written to a staging folder and moved to each call's output folder, so the pipeline is
        # parsed once.
        self._staging = Path(tempfile.mkdtemp(prefix="medunet-segmenter-"))
        self.parser = inference_bundle(bundle_dir, checkpoint, {**(overrides or {}), "output_dir": str(self._staging)})
        self.network = load_weights(self.parser.get_parsed_content("network"), checkpoint).eval()
        self.device = torch.device(self.parser.get_parsed_content("device"))
        self.preprocessing = self.parser.get_parsed_content("preprocessing")
        self.inferer = self.parser.get_parsed_content("inferer")
        self.postprocessing = self.parser.get_parsed_content("postprocessing")
        # a multi-series model's SeriesDescription patterns (one per input channel): a case is then a study folder
        self.channel_series: list[str] | None = (
            self.parser.get_parsed_content("channel_series") if "channel_series" in self.parser else None
        )
        self._lock = threading.Lock()
        self.last_shape: tuple[int, ...] | None = None  # spatial shape of the last case segmented

    def segment(self, case: str | Path, output_dir: str | Path) -> list[Path]:
        """Segments one case into ``output_dir``; returns the files written there."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        with self._lock:
            try:
                data = self.preprocessing({"image": str(case)})
            except RuntimeError as err:
                cause = transform_error(err)  # surface medunet's own message (file, reason, fix)
                if isinstance(cause, (ValueError, FileNotFoundError)):
                    named = str(cause) if str(Path(case).name) in str(cause) else f"{case}: {cause}"
                    raise type(cause)(named) from None
                raise
            image = data["image"][None].to(self.device)
            self.last_shape = tuple(int(s) for s in image.shape[2:])
            with torch.inference_mode():
                pred = self.inferer(image, self.network)
            # The batch was made with [None] (not collated), so the metadata is unbatched: index, don't decollate.
            self.postprocessing({**data, "pred": pred[0]})
            for staged in sorted(self._staging.iterdir()):
                written.append(atomic_move(staged, out / staged.name))
        logger.info("segmented %s: %s", Path(case).name, ", ".join(p.name for p in written))
        return written
