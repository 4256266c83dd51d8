"""PNG overlays: the prediction in green, the reference outline in red, 3D at a chosen slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medunet.utils.overlay import busiest_slice, overlay_png, slice2d


def test_overlay_colours_prediction_and_reference_outline(tmp_path: Path) -> None:
    image = torch.rand(1, 40, 30)  # (C, x, y): PNG rows are y, columns x
    pred = torch.zeros(1, 40, 30)
    pred[0, 5:15, 10:20] = 1
    label = torch.zeros(1, 40, 30)
    label[0, 20:30, 5:25] = 1
    path = overlay_png(image, pred, label, tmp_path / "sub" / "o.png")
    rgb = np.asarray(Image.open(path))
    assert rgb.shape == (30, 40, 3)
    inside = rgb[12:18, 7:13]  # rows y 10..20, columns x 5..15
    assert (inside[..., 1] > inside[..., 0]).all()  # green tint
    assert tuple(rgb[5, 25]) == (255, 0, 0)  # the reference outline (y=5 is its first row)
    assert tuple(rgb[10, 25]) != (255, 0, 0)  # inside the reference, not its outline


def test_slices_of_3d_and_multichannel_inputs() -> None:
    volume = torch.zeros(2, 4, 5, 6)
    volume[1, :, :, 3] = 1  # channel 1 wins the argmax on the middle slice
    assert slice2d(volume).shape == (5, 4)
    assert slice2d(volume).min() == 1
    pred = torch.zeros(1, 4, 5, 6)
    pred[0, :, :, 4] = 1
    assert busiest_slice(pred) == 4
