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

from medunet.apps.segment import model_summary, segment, shipped_models
from medunet.cli import main
from medunet.metrics import instance_scores
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
NUCLEI_FLOOR = {"ap@0.50": 0.57, "f1": 0.69}  # mean over NUCLEI_IMAGES; measured 0.612 and 0.735 (epoch 50 weights)


EM_SLICES = ["20", "24"]  # validation slices of isbi2012_em
EM_FLOOR = None  # set below

SHIPPED = ["nuclei", "em_membranes"]


def test_the_models_are_shipped_within_16_mb() -> None:
    assert set(SHIPPED) <= set(shipped_models())
    for name in SHIPPED:
        weights = shipped_models()[name] / "models" / "model.pt"
        assert weights.stat().st_size <= 16 * 1024 * 1024, f"{weights} is over 16 MB"


def test_the_list_shows_each_model_with_its_cards_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for name in SHIPPED:
        line = next(line for line in listed if line.split()[0] == name)
        assert model_summary(shipped_models()[name]) in line
        assert "AP@0.5" in line or "V_Rand" in line, "the summary states the model's validation score"


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
    """Two validation slices (20 and 24): the instances partition the slice (no slice without cells) and the
    challenge's V_Rand (thinned) against the true cells stays above the floor."""
    from medunet.metrics.isbi import vrand_vinfo
    from medunet.utils.labels import label_components

    base = require(shared_data / "isbi2012_em")
    images = tmp_path / "images"
    images.mkdir()
    for name in EM_SLICES:
        (images / f"{name}.png").symlink_to(base / "images" / f"{name}.png")
    segment("em_membranes", images, tmp_path / "out", settings={"device": "cpu"}, progress=False)
    scores = []
    for name in EM_SLICES:
        cells = label_components(np.asarray(Image.open(base / "labels" / f"{name}.png")) > 127)
        instances = np.asarray(Image.open(tmp_path / "out" / f"{name}_instances.png")).astype(np.int64)
        assert instances.max() > 0, f"slice {name}: no cells"
        scores.append(vrand_vinfo(instances, cells)[0])
    mean = float(np.mean(scores))
    assert mean >= EM_FLOOR, f"em_membranes V_Rand {mean:.4f} under its floor {EM_FLOOR} on slices {EM_SLICES}"
