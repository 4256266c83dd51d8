"""The fixture of the application tests: the unet3d bundle's inference with a small network."""

from __future__ import annotations

import pytest
import torch

from medunet.apps.segmenter import BundleSegmenter
from medunet.networks import ValidUNet
from tests.conftest import REPO

SMALL = {
    "features": [4, 8, 16, 32],
    "pool_sizes": [[2, 2, 1], [2, 2, 1], [2, 2, 1]],
    "output_tile": [68, 68, 24],
    "device": "cpu",
    "write_rtstruct": True,
}


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> BundleSegmenter:
    """The unet3d bundle's inference pipeline with a small network of fixed random weights (the workflow, not
    the model, is under test)."""
    torch.manual_seed(0)
    net = ValidUNet(3, 1, 2, features=SMALL["features"], norm="batch", dropout=0.0, pool_sizes=SMALL["pool_sizes"])
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 0.3]))  # predict some foreground
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    return BundleSegmenter(REPO / "bundles" / "unet3d", path, {**SMALL, "intensity_preset": "mr"})


@pytest.fixture(scope="module")
def two_series_segmenter(tmp_path_factory: pytest.TempPathFactory) -> BundleSegmenter:
    """The unet3d bundle's inference as a two-series model (T1post and FLAIR as channels, the bundle's
    channel_series) with a small network of fixed random weights."""
    torch.manual_seed(0)
    net = ValidUNet(3, 2, 2, features=SMALL["features"], norm="batch", dropout=0.0, pool_sizes=SMALL["pool_sizes"])
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 0.3]))
    path = tmp_path_factory.mktemp("ckpt2") / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    settings = {**SMALL, "intensity_preset": "mr", "in_channels": 2, "channel_series": ["(?i)t1post", "(?i)flair"]}
    return BundleSegmenter(REPO / "bundles" / "unet3d", path, settings)
