"""The paper's weight map against a brute-force reference (one full distance transform per object)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image
from scipy import ndimage

from medunet.transforms import UNetWeightMap, UNetWeightMapd
from medunet.transforms.functional import class_balance_weights, separate_touching, unet_weight_map
from tests.conftest import require


def brute_force(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0, spacing=None) -> np.ndarray:
    labels = [i for i in np.unique(instances) if i > 0]
    dists = np.stack([ndimage.distance_transform_edt(instances != i, sampling=spacing) for i in labels])
    dists.sort(axis=0)
    d1 = dists[0]
    d2 = dists[1] if len(labels) > 1 else np.full(instances.shape, np.inf)
    fg = instances > 0
    wc = np.where(fg, fg.size / (2 * fg.sum()), fg.size / (2 * (~fg).sum()))
    return wc + np.where(fg, 0.0, w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)))


def two_squares(gap: int) -> np.ndarray:
    labels = np.zeros((60, 80), np.int32)
    labels[20:40, 10:35] = 1
    labels[20:40, 35 + gap : 60 + gap] = 2
    return labels


def test_two_squares_with_gap_match_brute_force() -> None:
    labels = two_squares(gap=2)
    w = unet_weight_map(labels, separate=False)
    np.testing.assert_allclose(w, brute_force(labels), atol=1e-4)
    # the gap between the squares carries nearly the full border term
    gap = w[25:35, 35:37]
    assert gap.min() > 0.8 * 10.0  # d1 + d2 = 3 px: exp(-9 / 50) = 0.84
    assert w[5, 5] < w[25, 35] / 5


def test_touching_squares_get_a_separating_border() -> None:
    labels = two_squares(gap=0)
    carved = separate_touching(labels)
    assert (carved[20:40, 35] == 0).all()  # the first column of the right square is now background
    assert (carved[20:40, 34] == 1).all()
    assert (labels[20:40, 35] == 2).all()  # the input is untouched
    w = unet_weight_map(labels)
    np.testing.assert_allclose(w, brute_force(carved), atol=1e-4)
    assert w[20:40, 35].min() > 0.85 * 10.0


def test_three_discs_3d_with_spacing_match_brute_force() -> None:
    grid = np.indices((30, 40, 40)).astype(float)
    labels = np.zeros((30, 40, 40), np.int32)
    for i, (c, r) in enumerate([((15, 12, 12), 8), ((15, 27, 14), 7), ((12, 20, 29), 8)], start=1):
        inside = sum((g - ci) ** 2 for g, ci in zip(grid, c)) <= r**2
        labels[inside & (labels == 0)] = i
    spacing = (2.0, 0.8, 0.8)
    w = unet_weight_map(labels, sigma=4.0, spacing=spacing)
    np.testing.assert_allclose(w, brute_force(separate_touching(labels), sigma=4.0, spacing=spacing), atol=1e-4)


def test_single_object_and_no_object() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[5:10, 5:10] = 1
    w = unet_weight_map(labels)
    np.testing.assert_allclose(w, class_balance_weights((labels > 0).astype(int), 2))
    assert np.all(unet_weight_map(np.zeros((10, 10), np.int32)) == 1.0)


def test_binary_labels_use_connected_components() -> None:
    binary = (two_squares(gap=3) > 0).astype(np.uint8)
    np.testing.assert_allclose(
        unet_weight_map(binary, binary=True, separate=False), brute_force(ndimage.label(binary)[0]), atol=1e-4
    )


def test_weight_peaks_between_touching_dsb_nuclei(shared_data: Path) -> None:
    path = require(shared_data / "dsb2018_nuclei" / "labels" / "0ea221716cf1.png")
    labels = np.asarray(Image.open(path)).astype(np.int64)
    w = unet_weight_map(labels)
    carved = (labels > 0) & (separate_touching(labels) == 0)
    assert carved.sum() > 100  # the image has many touching nuclei
    background = labels == 0
    far = background & (ndimage.distance_transform_edt(background) > 10)
    w_bg = float(w[far].max())
    assert float(np.median(w[carved])) > w_bg + 0.5 * 10.0
    # the highest weights sit on (or within a pixel of) the carved borders between touching nuclei;
    # the rest are in narrow background gaps between nuclei that nearly touch
    top = w >= np.quantile(w, 0.995)
    assert ndimage.binary_dilation(carved)[top].mean() > 0.8


def test_bad_labels_are_rejected_and_input_untouched() -> None:
    with pytest.raises(ValueError, match="integer label values"):
        unet_weight_map(np.array([[0.0, 0.5], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="integer label values"):
        unet_weight_map(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=">= 0"):
        unet_weight_map(np.array([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match="2D or 3D"):
        unet_weight_map(np.zeros((4,), np.int32))
    labels = two_squares(0)
    before = labels.copy()
    unet_weight_map(labels)
    np.testing.assert_array_equal(labels, before)


def test_transforms_wrap_the_function() -> None:
    labels = two_squares(0)
    meta = MetaTensor(
        torch.from_numpy(labels)[None], affine=torch.diag(torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    )
    out = UNetWeightMapd("label")({"label": meta})
    assert out["weight"].shape == (1, 60, 80)
    np.testing.assert_allclose(out["weight"][0].numpy(), unet_weight_map(labels), atol=1e-6)
    physical = UNetWeightMap(use_spacing=True, sigma=2.5)(meta)
    np.testing.assert_allclose(physical[0].numpy(), unet_weight_map(labels, sigma=2.5, spacing=(0.5, 0.5)), atol=1e-6)
