"""Intensity presets: CT window, MR percentile clip + z-score, microscopy 0-1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medunet.transforms import IntensityPresetd, intensity_preset


def test_intensity_presets() -> None:
    ct = torch.tensor([[-1000.0, -160.0, 40.0, 240.0, 3000.0]])
    np.testing.assert_allclose(np.asarray(intensity_preset("ct")(ct)), [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    mr = torch.from_numpy(np.random.default_rng(0).gamma(2.0, 100.0, size=(1, 50, 50)).astype(np.float32))
    mr[0, 0, 0] = 1e6  # an outlier the percentile clip removes
    normed = np.asarray(intensity_preset("mr")(mr))
    assert abs(normed.mean()) < 1e-3
    assert abs(normed.std() - 1.0) < 1e-2
    assert normed.max() < 10
    em = torch.tensor([[[10.0, 20.0], [30.0, 50.0]]])
    np.testing.assert_allclose(np.asarray(intensity_preset("microscopy")(em)), [[[0.0, 0.25], [0.5, 1.0]]])
    with pytest.raises(ValueError, match="preset='pet' is not supported; valid options are 'ct', 'mr', 'microscopy'"):
        intensity_preset("pet")
    with pytest.raises(ValueError, match="does not take"):
        intensity_preset("ct", lower=1)


def test_dictionary_form_applies_the_preset_to_its_keys() -> None:
    data = {"image": torch.tensor([[10.0, 30.0]]), "label": torch.tensor([[1.0, 2.0]])}
    out = IntensityPresetd("image", preset="microscopy")(data)
    assert out["image"].tolist() == [[0.0, 1.0]]
    assert out["label"].tolist() == [[1.0, 2.0]]
