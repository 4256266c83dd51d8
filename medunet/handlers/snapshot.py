"""A PNG of predictions overlaid on a validation image, refreshed at every validation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from PIL import Image

__all__ = ["ValidationSnapshot", "overlay_png"]

logger = logging.getLogger(__name__)


def _slice2d(x: Any) -> np.ndarray:
    """(C, *S) -> 2D array: channel 0 (or argmax of several), middle slice of the last axis in 3D."""
    t = torch.as_tensor(x).detach().float().cpu()
    t = t.argmax(0).float() if t.shape[0] > 1 else t[0]
    if t.ndim == 3:
        t = t[..., t.shape[-1] // 2]
    return t.numpy().T  # MONAI's (x, y) order -> image rows, columns


def overlay_png(image: Any, pred: Any, label: Any | None, path: str | Path) -> Path:
    """Gray image with the predicted foreground in green and the reference outline in red."""
    img = _slice2d(image)
    lo, hi = np.percentile(img, (1, 99))
    gray = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    rgb = np.stack([gray] * 3, axis=-1)
    fg = _slice2d(pred) > 0
    rgb[fg] = 0.55 * rgb[fg] + 0.45 * np.array([0, 255, 0])
    if label is not None:
        ref = _slice2d(label) > 0
        edge = ref & ~(np.roll(ref, 1, 0) & np.roll(ref, -1, 0) & np.roll(ref, 1, 1) & np.roll(ref, -1, 1))
        rgb[edge] = [255, 0, 0]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(out)
    return out


class ValidationSnapshot:
    """Writes ``<output_dir>/val_overlay.png`` from the first case of each validation run.

    Reads ``image``, ``pred`` and ``label`` from the evaluator's (decollated) output.
    """

    def __init__(self, output_dir: str | Path, filename: str = "val_overlay.png") -> None:
        self.path = Path(output_dir) / filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch_length = engine.state.epoch_length or 1
        if (engine.state.iteration - 1) % epoch_length != 0:
            return
        output = engine.state.output
        first = output[0] if isinstance(output, list) else output
        if not isinstance(first, dict) or "pred" not in first or "image" not in first:
            return
        image, pred, label = first["image"], first["pred"], first.get("label")
        if image.ndim == pred.ndim + 1:  # not decollated: (B, C, *S)
            image, pred, label = image[0], pred[0], None if label is None else label[0]
        overlay_png(image, pred, label, self.path)
