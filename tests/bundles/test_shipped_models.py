"""The shipped models keep their accuracy: each segments a few images of its validation split (shared data) through
``medunet segment``'s code path and must reach its floor.

The floors sit a margin below what the shipped weights scored on the same images when they were committed
(``benchmarks/shipped_models.py`` measures the whole validation split; the model cards quote it). A change to the
weights, the post-processing, the intensity preset or the inferer that costs accuracy fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medunet.apps.segment import segment, shipped_models
from medunet.metrics import instance_scores
from medunet.metrics.isbi import vrand_vinfo
from medunet.utils.labels import label_components
from tests.conftest import require

# validation images of dsb2018_stage1 (split seed 0): 3 fluorescence, 2 histology, the brightfield one
NUCLEI_IMAGES = {
    "a0de55384fad": "fluorescence",
    "c2a646a819f5": "fluorescence",
    "f8e74d4006dd": "fluorescence",
    "eb1df8ed879d": "histology",
    "420f43d21dba": "histology",
    "5e263abff938": "brightfield",
}
NUCLEI_FLOOR = {"ap@0.50": None, "f1": None}  # mean over NUCLEI_IMAGES
EM_SLICES = ["20", "24"]
EM_FLOOR_VRAND = None  # mean V_Rand (thinned) of the instance output over EM_SLICES


def test_both_models_are_shipped() -> None:
    assert {"nuclei", "em_membranes"} <= set(shipped_models())
    for name in ("nuclei", "em_membranes"):
        weights = shipped_models()[name] / "models" / "model.pt"
        assert weights.stat().st_size <= 16 * 1024 * 1024, f"{weights} is over 16 MB"


def test_nuclei_model_reaches_its_floor(shared_data: Path, tmp_path: Path) -> None:
    base = require(shared_data / "dsb2018_stage1")
    images = tmp_path / "images"
    images.mkdir()
    for name in NUCLEI_IMAGES:
        (images / f"{name}.png").symlink_to(base / "images" / f"{name}.png")
    segment("nuclei", images, tmp_path / "out", settings={"device": "cpu"}, progress=False)
    scores = []
    for name in NUCLEI_IMAGES:
        truth = np.asarray(Image.open(base / "labels" / f"{name}.png")).astype(np.int64)
        pred = np.asarray(Image.open(tmp_path / "out" / f"{name}_instances.png")).astype(np.int64)
        scores.append(instance_scores(pred, truth))
    for metric, floor in NUCLEI_FLOOR.items():
        mean = float(np.mean([s[metric] for s in scores]))
        assert mean >= floor, f"nuclei {metric} {mean:.3f} under its floor {floor} on {sorted(NUCLEI_IMAGES)}"


def test_em_model_reaches_its_floor(shared_data: Path, tmp_path: Path) -> None:
    base = require(shared_data / "isbi2012_em")
    images = tmp_path / "images"
    images.mkdir()
    for name in EM_SLICES:
        (images / f"{name}.png").symlink_to(base / "images" / f"{name}.png")
    segment("em_membranes", images, tmp_path / "out", settings={"device": "cpu"}, progress=False)
    vrand = []
    for name in EM_SLICES:
        truth = label_components(np.asarray(Image.open(base / "labels" / f"{name}.png")) > 127)
        instances = np.asarray(Image.open(tmp_path / "out" / f"{name}_instances.png")).astype(np.int64)
        assert (instances > 0).all(), "the cells partition the image"
        vrand.append(vrand_vinfo(instances, truth)[0])
    assert float(np.mean(vrand)) >= EM_FLOOR_VRAND, f"em_membranes V_Rand {vrand} under its floor {EM_FLOOR_VRAND}"
