"""Rendering a segmentation over its image as a PNG: the quick visual check that training (validation
snapshots) and inference (overlay outputs) both write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medunet.utils.files import atomic_write

__all__ = ["busiest_slice", "overlay_png", "slice2d"]

# Where the prediction is drawn over the gray image: this much of its colour.
_PRED_ALPHA = 0.45
_PRED_RGB = np.array([0, 255, 0])
_REF_RGB = np.array([255, 0, 0])


def slice2d(x: Any) -> np.ndarray:
    """``(C, *S)`` -> a 2D array in image (row, column) order: channel 0, or the argmax of several channels;
    in 3D the middle slice of the last axis."""
    t = torch.as_tensor(x).detach().float().cpu()
    t = t.argmax(0).float() if t.shape[0] > 1 else t[0]
    if t.ndim == 3:
        t = t[..., t.shape[-1] // 2]
    return t.numpy().T  # MONAI's (x, y) order -> image rows, columns


def busiest_slice(pred: Any) -> int:
    """Index along the last axis of a 3D ``(C, x, y, z)`` prediction where channel 0 sums highest (the slice
    that shows most of the segmentation)."""
    return int(torch.as_tensor(pred[0]).flatten(0, 1).sum(0).argmax())


def overlay_png(image: Any, pred: Any, label: Any | None, path: str | Path) -> Path:
    """Writes the gray image (1st-99th percentile window) with the predicted foreground in green and the
    reference outline in red; ``(C, *S)`` inputs, 3D shown at the middle slice of the last axis."""
    img = slice2d(image)
    lo, hi = np.percentile(img, (1, 99))
    gray = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    rgb = np.stack([gray] * 3, axis=-1)
    fg = slice2d(pred) > 0
    rgb[fg] = (1 - _PRED_ALPHA) * rgb[fg] + _PRED_ALPHA * _PRED_RGB
    if label is not None:
        ref = slice2d(label) > 0
        edge = ref & ~(np.roll(ref, 1, 0) & np.roll(ref, -1, 0) & np.roll(ref, 1, 1) & np.roll(ref, -1, 1))
        rgb[edge] = _REF_RGB
    picture = Image.fromarray(rgb.astype(np.uint8))
    return atomic_write(path, lambda fh: picture.save(fh, format="PNG"))
