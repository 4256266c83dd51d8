"""``medunet evaluate``: pairing, metrics on a known case, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medunet.apps.evaluation as evaluation
from medunet.apps.evaluation import evaluate_folder, format_table, pair_cases
from medunet.cli import main
from medunet.networks import ValidUNet
from tests.conftest import REPO

SMALL = {
    "features": [4, 8, 16, 32, 64],
    "output_tile": [68, 68],
    "device": "cpu",
    "dropout": 0.0,
    "instance_min_size": 0,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 2D network with fixed random weights (the evaluation, not the model, is under test)."""
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 2, features=SMALL["features"], dropout=0.0)
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 0.2]))  # predict some objects
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    return path


def write_case(folder: Path, name: str, array: np.ndarray, dtype: type = np.uint8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(array.astype(dtype)).save(path)
    return path


def make_set(root: Path, label_name: str = "a_seg.png", label: np.ndarray | None = None) -> tuple[Path, Path]:
    image = np.zeros((60, 70), np.uint8)
    image[10:30, 10:30] = 200
    image[35:55, 40:65] = 200
    instances = np.zeros((60, 70), np.uint16)
    instances[10:30, 10:30] = 1
    instances[35:55, 40:65] = 2
    write_case(root / "images", "a.png", image)
    write_case(root / "labels", label_name, instances if label is None else label, np.uint16)
    return root / "images", root / "labels"


def test_pairs_by_name_and_names_a_missing_label(tmp_path: Path) -> None:
    images, labels = make_set(tmp_path)
    assert pair_cases(images, labels) == [{"image": str(images / "a.png"), "label": str(labels / "a_seg.png")}]
    write_case(images, "b.png", np.zeros((8, 8)))
    with pytest.raises(FileNotFoundError, match=r"no label for image .*b\.png"):
        pair_cases(images, labels)
    with pytest.raises(FileNotFoundError, match="--labels"):
        pair_cases(images, tmp_path / "missing")


def test_evaluates_and_writes_every_metric(tmp_path: Path, checkpoint: Path) -> None:
    images, labels = make_set(tmp_path)
    result = evaluate_folder(REPO / "bundles" / "unet2d", checkpoint, images, labels, tmp_path / "out", overrides=SMALL)
    case = result["cases"][0]
    for key in ("dice", "iou", "pixel_error", "rand_error", "instance_rand_error", "f1", "ap@0.50", "ap_mean", "pq",
                "merged", "split", "vrand_thinned", "vinfo_thinned", "isbi_pixel_error"):  # fmt: skip
        assert key in case
        assert 0.0 <= case[key] <= max(1.0, case.get("n_true", 1))
    assert case["n_true"] == 2
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["mean"]["dice"] == pytest.approx(case["dice"])
    assert (tmp_path / "out" / "metrics.csv").read_text().splitlines()[0].startswith("image,dice")
    assert "mean" in format_table(result)


def test_its_own_prediction_as_labels_scores_perfectly_through_the_cli(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = make_set(tmp_path)
    captured: dict[str, np.ndarray] = {}
    original = evaluation.instances_from_prediction

    def capture(probs: np.ndarray, **kwargs: object) -> np.ndarray:
        captured["labels"] = original(probs, **kwargs)
        return captured["labels"]

    monkeypatch.setattr(evaluation, "instances_from_prediction", capture)
    evaluate_folder(REPO / "bundles" / "unet2d", checkpoint, images, labels, tmp_path / "first", overrides=SMALL)
    monkeypatch.undo()
    assert captured["labels"].max() > 0  # the network predicts some objects
    # the loader reads PNG as (width, height); the file is written as (height, width)
    write_case(tmp_path / "labels2", "a.png", captured["labels"].T, np.uint16)
    args = ["evaluate", "--bundle", str(REPO / "bundles" / "unet2d"), "--checkpoint", str(checkpoint),
            "--images", str(images), "--labels", str(tmp_path / "labels2"), "--output", str(tmp_path / "cli")]  # fmt: skip
    args += [f"--override={k}={json.dumps(v)}" for k, v in SMALL.items()]
    assert main(args) == 0
    mean = json.loads((tmp_path / "cli" / "metrics.json").read_text())["mean"]
    assert mean["f1"] == 1.0
    assert mean["ap_mean"] == 1.0
    assert mean["pq"] == 1.0
    assert mean["merged"] == 0
    assert "metrics per image" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("label", "rule", "message"),
    [
        (
            np.zeros((30, 70)),
            "instances",
            r"label .*a_seg\.png has shape \(70, 30\), its image .*a\.png has \(70, 60\)",
        ),
        (np.full((60, 70), 7), "classes", r"label .*a_seg\.png: label values \[7\] are outside the classes 0..1"),
    ],
)
def test_bad_labels_exit_with_the_file_named(
    tmp_path: Path, checkpoint: Path, label: np.ndarray, rule: str, message: str
) -> None:
    images, labels = make_set(tmp_path, label=label)
    args = ["evaluate", "--bundle", str(REPO / "bundles" / "unet2d"), "--checkpoint", str(checkpoint),
            "--images", str(images), "--labels", str(labels), "--label-rule", rule, "--output", str(tmp_path / "o")]  # fmt: skip
    args += [f"--override={k}={json.dumps(v)}" for k, v in SMALL.items()]
    with pytest.raises(SystemExit, match=message):
        main(args)


def test_missing_label_exits_with_the_image_named(tmp_path: Path, checkpoint: Path) -> None:
    images, _ = make_set(tmp_path)
    (tmp_path / "other").mkdir()
    write_case(tmp_path / "other", "zzz.png", np.zeros((60, 70)))
    with pytest.raises(SystemExit, match=r"medunet evaluate: no label for image .*a\.png"):
        main(["evaluate", "--bundle", str(REPO / "bundles" / "unet2d"), "--checkpoint", str(checkpoint),
              "--images", str(images), "--labels", str(tmp_path / "other")])  # fmt: skip


def test_dicom_series_with_a_label_series(tmp_path: Path) -> None:
    """3D: a DICOM image series folder and a label series folder of the same name."""
    from medunet.data.dicom import write_dicom_series

    small = {"features": [4, 8, 16, 32], "pool_sizes": [[2, 2, 1]] * 3, "output_tile": [36, 36, 8], "device": "cpu",
             "intensity_preset": "mr", "instance_min_size": 0}  # fmt: skip
    torch.manual_seed(0)
    net = ValidUNet(3, 1, 2, features=small["features"], norm="batch", dropout=0.0, pool_sizes=small["pool_sizes"])
    torch.save({"model": net.state_dict()}, tmp_path / "model.pt")
    volume = np.random.default_rng(0).integers(0, 300, size=(24, 20, 6)).astype(np.float32)
    label = np.zeros(volume.shape, np.float32)
    label[4:12, 4:12, 1:5] = 1
    write_dicom_series(volume, tmp_path / "images" / "case1", modality="MR", rescale=(1.0, 0.0))
    write_dicom_series(label, tmp_path / "labels" / "case1", modality="MR", rescale=(1.0, 0.0))
    result = evaluate_folder(REPO / "bundles" / "unet3d", tmp_path / "model.pt", tmp_path / "images", tmp_path / "labels",
                             tmp_path / "out", "classes", overrides=small)  # fmt: skip
    case = result["cases"][0]
    assert case["label"].endswith("case1")
    assert case["n_true"] == 1
    assert 0.0 <= case["dice"] <= 1.0
    assert "vrand_thinned" not in case
