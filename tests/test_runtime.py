"""The ONNX artefact and its torch-free runtime: logits equal to the torch inferer's, the same labels and instances,
files / folders / zarr, and a run in a virtual environment without torch (.venv-runtime, scripts/setup_runtime.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import ClipIntensityPercentiles, Compose, NormalizeIntensity, ScaleIntensity, ScaleIntensityRange
from PIL import Image

from medunet.export import export_onnx
from medunet.inference import OverlapTileInferer
from medunet.networks import ValidUNet
from medunet.runtime import Pipeline, apply_intensity_preset, main
from medunet.transforms.functional.instances import instances_from_prediction
from tests.conftest import REPO

RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"
INSTANCES = {"split": "borders", "min_size": 4, "seed_threshold": 0.0}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ValidUNet, Path]:
    """A small 3-class network with random weights, exported with flips, probabilities and instance settings."""
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 3, features=(4, 8, 16)).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.zip"
    export_onnx(
        net, path, input_tile=(92, 108), flip_axes=[0, 1], intensity_preset="microscopy", instances=INSTANCES,
        name="tiny",
    )  # fmt: skip
    return net, path


def torch_reference(net: ValidUNet, image: np.ndarray, output: str) -> np.ndarray:
    """What the bundle's torch inferer gives for a prepared image (C, *S)."""
    inferer = OverlapTileInferer(input_tile=(92, 108), flip_axes=[0, 1], output=output)
    return inferer(torch.from_numpy(image)[None], net)[0].numpy()


def test_artefact_holds_the_network_and_its_pipeline(exported: tuple[ValidUNet, Path]) -> None:
    _, path = exported
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["model.onnx", "pipeline.json"]
        settings = json.loads(archive.read("pipeline.json"))
    assert settings["input_tile"] == [92, 108]
    assert settings["flip_axes"] == [0, 1]
    assert settings["output"] == "probabilities"
    assert settings["intensity_preset"] == "microscopy"
    assert settings["instances"] == INSTANCES
    assert settings["geometry"]["pool_sizes"] == [[2, 2], [2, 2]]


@pytest.mark.parametrize("shape", [(150, 130), (40, 300), (93, 109)])
def test_logits_and_labels_equal_the_torch_inferers(exported: tuple[ValidUNet, Path], shape: tuple[int, int]) -> None:
    """Tiles on the same grid, the same mirroring and flips: equal up to float32 rounding (relative 1e-5 of the
    largest logit), the same class everywhere, also for images smaller than the tile and of odd sizes."""
    net, path = exported
    pipeline = Pipeline.load(path, threads=1)
    image = np.random.default_rng(1).random((1, *shape), dtype=np.float32)
    logits, reference = pipeline.logits(image), torch_reference(net, image, "logits")
    assert logits.shape == reference.shape == (3, *shape)
    assert np.abs(logits - reference).max() <= 1e-5 * np.abs(reference).max()
    np.testing.assert_array_equal(logits.argmax(0), reference.argmax(0))
    assert pipeline.plan(shape).tile_starts() == OverlapTileInferer(input_tile=(92, 108)).plan(shape, net).tile_starts()


def test_segment_applies_the_preset_and_the_instance_post_processing(exported: tuple[ValidUNet, Path]) -> None:
    net, path = exported
    pipeline = Pipeline.load(path)
    rgb = np.random.default_rng(2).integers(0, 255, (3, 120, 140)).astype(np.uint8)
    result = pipeline.segment(rgb)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1)
    gray = (rgb.astype(np.float32) * weights).sum(0, keepdims=True)
    prepared = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)(gray)
    probabilities = torch_reference(net, np.asarray(prepared, dtype=np.float32), "probabilities")
    assert np.abs(result["scores"] - probabilities).max() < 1e-5
    np.testing.assert_array_equal(result["labels"], probabilities.argmax(0))
    np.testing.assert_array_equal(result["instances"], instances_from_prediction(probabilities, **INSTANCES))


def test_intensity_presets_equal_monais() -> None:
    rng = np.random.default_rng(3)
    image = (rng.normal(300, 200, (2, 30, 40)) * (rng.random((2, 30, 40)) > 0.2)).astype(np.float32)
    monai = {
        "ct": ScaleIntensityRange(-160.0, 240.0, 0.0, 1.0, clip=True),
        "mr": Compose([ClipIntensityPercentiles(0.5, 99.5, channel_wise=True), NormalizeIntensity(channel_wise=True)]),
        "microscopy": ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True),
    }
    for preset, transform in monai.items():
        expected = np.asarray(transform(image), dtype=np.float32)
        np.testing.assert_allclose(apply_intensity_preset(image, preset), expected, rtol=1e-5, atol=1e-5)
    nonzero = Compose(
        [ClipIntensityPercentiles(1, 99, channel_wise=True), NormalizeIntensity(nonzero=True, channel_wise=True)]
    )
    np.testing.assert_allclose(
        apply_intensity_preset(image, "mr", {"lower": 1, "upper": 99, "nonzero": True}),
        np.asarray(nonzero(image)), rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_bad_artefacts_and_inputs_say_what_is_wrong(exported: tuple[ValidUNet, Path], tmp_path: Path) -> None:
    _, path = exported
    with pytest.raises(FileNotFoundError, match="no such exported model"):
        Pipeline.load(tmp_path / "missing.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not an artefact of `medunet export --onnx`"):
        Pipeline.load(tmp_path / "bad.zip")
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(tmp_path / "future.zip", "w") as out:
        out.writestr("model.onnx", archive.read("model.onnx"))
        out.writestr("pipeline.json", json.dumps({**json.loads(archive.read("pipeline.json")), "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99; this runtime reads 1"):
        Pipeline.load(tmp_path / "future.zip")
    pipeline = Pipeline.load(path)
    with pytest.raises(ValueError, match=r"the model takes 2D images"):
        pipeline.segment(np.zeros((1, 4, 30, 30), dtype=np.float32))
    with pytest.raises(ValueError, match="image has 2 channel"):
        pipeline.segment(np.zeros((2, 30, 30), dtype=np.float32))
    assert main([str(path), str(tmp_path / "nothing"), str(tmp_path / "out")]) == 1
    with pytest.raises(ValueError, match="flip_axes=\\[2\\]"):
        export_onnx(ValidUNet(2, 1, 2, features=(2, 4)), tmp_path / "x.zip", flip_axes=[2])
    assert not (tmp_path / "x.zip").exists()


def write_pngs(folder: Path, count: int = 2) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(4)
    paths = []
    for i in range(count):
        paths.append(folder / f"cells{i}.png")
        Image.fromarray(rng.integers(0, 255, (100 + 10 * i, 120), dtype=np.uint8)).save(paths[-1])
    return paths


def expected_outputs(net: ValidUNet, png: Path) -> tuple[np.ndarray, np.ndarray]:
    """Labels and instances the torch path gives for a PNG (read as MONAI reads it: first axis along the width)."""
    image = np.asarray(Image.open(png)).T[None].astype(np.float32)
    prepared = np.asarray(ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)(image), dtype=np.float32)
    probabilities = torch_reference(net, prepared, "probabilities")
    return probabilities.argmax(0).astype(np.uint8).T, instances_from_prediction(probabilities, **INSTANCES).T


def test_folder_in_this_process(exported: tuple[ValidUNet, Path], tmp_path: Path) -> None:
    net, path = exported
    pngs = write_pngs(tmp_path / "in")
    assert main([str(path), str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    for png in pngs:
        labels, instances = expected_outputs(net, png)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"{png.stem}_seg.png")), labels)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"{png.stem}_instances.png")), instances)


@pytest.mark.skipif(
    not RUNTIME_PYTHON.exists(),
    reason=".venv-runtime is missing (scripts/setup_runtime.sh creates it; scripts/test.sh runs it)",
)
def test_runs_in_an_environment_without_torch(exported: tuple[ValidUNet, Path], tmp_path: Path) -> None:
    """The artefact on a folder of PNGs in .venv-runtime, whose Python has numpy, onnxruntime, scipy, scikit-image
    and Pillow but neither torch nor MONAI: the same labels and instances as the torch path."""
    net, path = exported
    probe = subprocess.run(
        [str(RUNTIME_PYTHON), "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('monai'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.split() == ["None", "None"]
    pngs = write_pngs(tmp_path / "in")
    script = (
        "import sys, runpy; sys.argv = ['medunet.runtime', *sys.argv[1:]]; "
        "runpy.run_module('medunet.runtime', run_name='__main__'); "
    )
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), "-X", "importtime", "-c", script, str(path), str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "onnxruntime" in imported
    assert not imported & {"torch", "monai"}
    for png in pngs:
        labels, instances = expected_outputs(net, png)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"{png.stem}_seg.png")), labels)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"{png.stem}_instances.png")), instances)
    assert sys.executable != str(RUNTIME_PYTHON)


@pytest.mark.skipif(
    not RUNTIME_PYTHON.exists(),
    reason=".venv-runtime is missing (scripts/setup_runtime.sh creates it; scripts/test.sh runs it)",
)
def test_shipped_nuclei_model_through_the_cli_equals_medunet_segment(tmp_path: Path) -> None:
    """`medunet export --onnx` of the shipped nuclei bundle, run by the torch-free runtime on a nuclei image: the
    same class labels and instance labels as `medunet segment nuclei` writes (0 pixels differ)."""
    from medunet.apps.segment import segment

    bundle = REPO / "bundles" / "nuclei"
    artefact = tmp_path / "nuclei.zip"
    subprocess.run(
        [sys.executable, "-m", "medunet.cli", "export", "--onnx", "--config-file", str(bundle / "configs" / "inference.json"),
         "--ckpt-path", str(bundle / "models" / "model.pt"), "--output", str(artefact)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    picture = np.zeros((180, 230), dtype=np.float32)  # bright blobs on a dark ground, some touching
    yy, xx = np.mgrid[:180, :230]
    for cy, cx, r in rng.uniform((10, 10, 6), (170, 220, 14), (25, 3)):
        picture += 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    Image.fromarray(np.clip(picture + rng.normal(10, 4, picture.shape), 0, 255).astype(np.uint8)).save(
        images / "blobs.png"
    )
    segment("nuclei", images, tmp_path / "torch", settings={"device": "cpu"}, progress=False)
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), "-m", "medunet.runtime", str(artefact), str(images), str(tmp_path / "onnx")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for kind in ("seg", "instances"):
        torch_path = tmp_path / "torch" / f"blobs_{kind}.png"
        ours = np.asarray(Image.open(tmp_path / "onnx" / f"blobs_{kind}.png"))
        theirs = np.asarray(Image.open(torch_path))
        assert ours.dtype == theirs.dtype
        assert ours.shape == theirs.shape
        assert int((ours != theirs).sum()) == 0, f"{kind}: {(ours != theirs).sum()} pixels differ"
    assert np.asarray(Image.open(tmp_path / "onnx" / "blobs_instances.png")).max() >= 5
