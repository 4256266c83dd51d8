"""The bundles end to end, through the exact commands a user types (subprocesses, smoke overlay)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medunet.handlers.checkpoint import epoch_checkpoints
from tests.conftest import REPO, free_port, stop

BUNDLES = ["unet2d", "unet3d"]
PYTHON = sys.executable


def bundle_cmd(workflow: str, *config_files: str, **overrides: object) -> list[str]:
    files = "[" + ",".join(f"'{f}'" for f in config_files) + "]" if len(config_files) > 1 else config_files[0]
    cmd = [PYTHON, "-m", "monai.bundle", "run", workflow, "--config_file", files]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


ENV = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def run(cmd: list[str], log: Path, timeout: float = 600) -> str:
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, check=False, env=ENV)
    text = log.read_text()
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{text[-4000:]}"
    return text


def train_files(name: str) -> tuple[str, str]:
    return f"bundles/{name}/configs/train.json", "configs/smoke.json"


# The 3D network of the bundle at a quarter of its width for the commands of these tests (the workflow, not the
# model, is under test): its 92-voxel tiles cost most of the suite's time at full width.
NARROW = {"unet2d": {}, "unet3d": {"features": "[8,16,32,64]"}}


def only_run(tracking_uri: str) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


@pytest.fixture(scope="module", params=BUNDLES)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One smoke training per bundle, shared by the tests below."""
    name = request.param
    out = tmp_path_factory.mktemp(name) / "run"
    run(bundle_cmd("training", *train_files(name), output_dir=out, **NARROW[name]), out.parent / "train.log")
    return name, out


def test_training_writes_checkpoints_and_mlflow_run(trained: tuple[str, Path]) -> None:
    name, out = trained
    assert (out / "best_model.pt").is_file()
    assert (out / "checkpoint_epoch=2.pt").is_file()
    uri = f"sqlite:///{out / 'mlflow' / 'mlflow.db'}"
    run_ = only_run(uri)
    params = run_.data.params
    assert params["bundle"] == name
    assert params["dataset"].startswith("medunet_synthetic")
    assert params["n_training"] == "2"
    assert params["epochs"] == "2"
    assert "code_version" in params
    assert "device" in params
    client = mlflow.MlflowClient(uri)
    for metric in ("val_mean_dice", "val_mean_iou", "val_pixel_error"):
        assert [m.step for m in client.get_metric_history(run_.info.run_id, metric)] == [1, 2]
    assert len(client.get_metric_history(run_.info.run_id, "train_loss")) == 4  # 2 epochs x 2 tiles
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {"config_merged.json", "val_overlay.png", "best_model.pt"} <= artifacts
    models = client.search_logged_models(experiment_ids=[run_.info.experiment_id])
    assert any(m.source_run_id == run_.info.run_id for m in models)
    model = next(m for m in models if m.source_run_id == run_.info.run_id)
    logged = mlflow.models.Model.load(model.artifact_location.removeprefix("file://"))
    spec = logged.signature.inputs.to_dict()[0]["tensor-spec"]
    expected = [1, 188, 188] if name == "unet2d" else [1, 92, 92, 92]  # a minimal valid input tile
    assert list(spec["shape"][1:]) == expected
    merged = json.loads((out / "config_merged.json").read_text())
    assert merged["overrides"]["output_dir"] == str(out)
    # no patient identifiers or file paths among the parameters
    assert not any("/" in v for k, v in params.items() if k not in ("code_version",))


def test_inference_keeps_shape_and_affine(trained: tuple[str, Path], tmp_path: Path) -> None:
    name, out = trained
    images = out / "default_data" / "imagesTr"
    infer_out = tmp_path / "pred"
    text = run(
        bundle_cmd(
            "inference",
            f"bundles/{name}/configs/inference.json",
            input_dir=images,
            output_dir=infer_out,
            ckpt_path=out / "best_model.pt",
            **NARROW[name],
        ),
        tmp_path / "infer.log",
    )
    inputs = sorted(images.iterdir())
    assert f"case 1 of {len(inputs)}: {inputs[0].name} (" in text  # progress, case by case
    assert f"{len(inputs)} cases in " in text
    outputs = sorted(infer_out.glob("*_seg.*"))
    assert len(outputs) == len(inputs)
    if name == "unet3d":  # a PNG overlay per case for a quick look
        assert len(list(infer_out.glob("*_overlay.png"))) == len(inputs)
    instances = sorted(p for p in infer_out.glob("*_instances.*") if p.suffix not in (".csv", ".json"))
    assert len(list(infer_out.glob("*_instances.csv"))) == len(inputs)  # the per-instance table of every case
    assert [p.name.replace("_instances", "_seg") for p in instances] == [p.name for p in outputs]
    for src, pred, objects in zip(inputs, outputs, instances):
        if name == "unet2d":
            assert pred.name == src.name.replace(".png", "_seg.png")
            a, b = np.asarray(Image.open(src)), np.asarray(Image.open(pred))
            assert a.shape == b.shape
            assert set(np.unique(b)) <= {0, 255}
            labels = np.asarray(Image.open(objects))
            assert labels.shape == a.shape
            assert labels.dtype == np.uint16
            assert ((labels > 0) <= (b > 0)).all()  # instances lie in the object class
        else:
            assert pred.name == src.name.replace(".nii.gz", "_seg.nii.gz")
            a, b = nib.load(src), nib.load(pred)
            assert a.shape == b.shape
            np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
            assert set(np.unique(np.asarray(b.dataobj))) <= {0, 1}


def test_a_bad_case_does_not_stop_the_batch(trained: tuple[str, Path], tmp_path: Path) -> None:
    """One unreadable file among the inputs: the other cases are segmented, cases.json records each outcome and
    the command fails naming the bad case."""
    name, out = trained
    images = tmp_path / "images"
    shutil.copytree(out / "default_data" / "imagesTr", images)
    good = sorted(p.name for p in images.iterdir())
    bad = images / ("0_broken.png" if name == "unet2d" else "0_broken.nii.gz")  # sorted first: the batch goes on
    bad.write_bytes(b"not an image at all")
    infer_out = tmp_path / "pred"
    cmd = bundle_cmd("inference", f"bundles/{name}/configs/inference.json", input_dir=images, output_dir=infer_out,
                     ckpt_path=out / "best_model.pt", **NARROW[name])  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=ENV, timeout=600, check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert f"1 of {len(good) + 1} cases failed: {bad.name}" in text
    assert len(list(infer_out.glob("*_seg.*"))) == len(good)  # every good case was written
    cases = json.loads((infer_out / "cases.json").read_text())
    assert cases["failed"] == 1
    assert [c["case"] for c in cases["cases"] if c["status"] == "failed"] == [bad.name]
    assert sorted(c["case"] for c in cases["cases"] if c["status"] == "ok") == good


def test_evaluate_reads_checkpoint_and_tracks(trained: tuple[str, Path], tmp_path: Path) -> None:
    name, out = trained
    text = run(
        bundle_cmd(
            "evaluating",
            *train_files(name)[:1],
            f"bundles/{name}/configs/evaluate.json",
            "configs/smoke.json",
            output_dir=out,
            **NARROW[name],
        ),
        tmp_path / "eval.log",
    )
    assert "val_mean_dice" in text
    assert (out / "evaluation" / "metrics.csv").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.run_name for r in runs} == {f"{name}-run", f"{name}-eval-run"}


# Moments of the kills (python -m tests.bundles.kill_at): at the first MLflow logging call with metrics, halfway
# through a checkpoint write, at a random time after the training starts (a fixed seed, so a failure can be rerun).
# The two counted moments come first, while no epoch is finished: each is then sure to come. After a timed kill the
# state depends on the machine's speed (with bfloat16 training an epoch may already be finished and logged, and a
# counted moment never comes), so the timed kill is last.
KILLS = {
    "unet2d": [("mlflow", "1"), ("checkpoint", "2"), ("seconds", f"{random.Random(7).uniform(0.5, 2.5):.2f}")],
    "unet3d": [("checkpoint", "2")],
}


def epochs_started(log_text: str) -> list[int]:
    return sorted({int(line.split("Epoch: ")[1].split("/")[0]) for line in log_text.splitlines() if "Epoch: " in line})


def test_resume_after_sigkill_continues_at_next_epoch(trained: tuple[str, Path], tmp_path: Path) -> None:
    """Killed at several moments and rerun each time: at most the epoch in progress is lost, no checkpoint under
    its final name is ever broken, one MLflow run with every step logged once, and the final weights are those
    of an uninterrupted run (the ``trained`` fixture: the same command, seed and epochs, never killed)."""
    name, uninterrupted = trained
    out, epochs = tmp_path / "run", 2
    cmd = bundle_cmd("training", *train_files(name), output_dir=out, epochs=epochs, **NARROW[name])
    for i, (moment, value) in enumerate(KILLS[name]):
        before = [e for e, _ in epoch_checkpoints(out)] if out.exists() else []
        log = tmp_path / f"killed-{i}-{moment}.log"
        with log.open("w") as fh:
            proc = subprocess.run(
                [PYTHON, "-m", "tests.bundles.kill_at", moment, value, *cmd[3:]],
                cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=ENV, timeout=600,
            )  # fmt: skip
        text = log.read_text()
        assert proc.returncode == -signal.SIGKILL, f"{moment} {value}: not killed\n{text[-3000:]}"
        if before:  # the rerun went on from the newest checkpoint
            assert f"resuming from {out}/checkpoint_epoch={before[-1]}.pt" in text, text[-3000:]
        done = [e for e, _ in epoch_checkpoints(out)]
        for _, path in epoch_checkpoints(out):  # a kill mid-write leaves no broken file under a final name
            torch.load(path, weights_only=True)
        if (out / "best_model.pt").exists():
            torch.load(out / "best_model.pt", weights_only=True)
        latest = done[-1] if done else 0
        assert max(epochs_started(text), default=0) <= latest + 1, "more than the epoch in progress was lost"
        assert latest < epochs

    text = run(cmd, tmp_path / "final.log")
    assert f"resuming from {out}/checkpoint_epoch={latest}.pt" in text or latest == 0
    assert epochs_started(text) == list(range(latest + 1, epochs + 1))
    assert (out / f"checkpoint_epoch={epochs}.pt").is_file()
    run_ = only_run(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")  # the interrupted run was continued
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(run_.info.run_id, "val_mean_dice")] == list(range(1, epochs + 1))
    for key in run_.data.metrics:  # an epoch trained again after a kill is not logged twice
        steps = [m.step for m in client.get_metric_history(run_.info.run_id, key)]
        assert len(steps) == len(set(steps)), f"{key} logged twice at steps {sorted(steps)}"
    temporaries = list(out.glob(".*.tmp"))
    assert not temporaries, f"temporaries of killed writes were left behind: {temporaries}"

    # the same seed without the kills: bitwise the same weights (every epoch's random numbers are reseeded)
    resumed_weights = torch.load(out / f"checkpoint_epoch={epochs}.pt", weights_only=True)["model"]
    straight_weights = torch.load(uninterrupted / f"checkpoint_epoch={epochs}.pt", weights_only=True)["model"]
    for key, value in straight_weights.items():
        assert torch.equal(resumed_weights[key], value), f"{key} differs after kill and resume"

    # rerunning the finished training says so and adds no MLflow run
    text = run(cmd, tmp_path / "third.log")
    assert "training already finished" in text
    assert only_run(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}").info.run_id == run_.info.run_id


def test_training_against_a_real_mlflow_server(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=(tmp_path / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=ENV,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not become ready"
            time.sleep(0.5)
        out = tmp_path / "run"
        run(bundle_cmd("training", *train_files("unet2d"), output_dir=out, tracking_uri=uri), tmp_path / "train.log")
        run_ = only_run(uri)
        assert run_.data.params["bundle"] == "unet2d"
        client = mlflow.MlflowClient(uri)
        assert len(client.get_metric_history(run_.info.run_id, "val_mean_dice")) == 2
        assert "config_merged.json" in {a.path for a in client.list_artifacts(run_.info.run_id)}
        assert not (out / "mlflow" / "mlflow.db").exists()  # nothing went to the embedded store
    finally:
        stop(server)


def test_monai_tracking_option_logs_into_the_same_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(bundle_cmd("training", *train_files("unet2d"), output_dir=out, tracking="mlflow"), tmp_path / "train.log")
    uri = f"sqlite:///{out / 'mlflow' / 'mlflow.db'}"
    run_ = only_run(uri)  # MONAI's handler found medunet's run by its name
    client = mlflow.MlflowClient(uri)
    assert len(client.get_metric_history(run_.info.run_id, "val_mean_dice")) >= 2
    assert "config_merged.json" in {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert list(out.glob("config_*.json"))  # MONAI's own copy of the executed config


@pytest.mark.parametrize("trained", ["unet2d"], indirect=True)
def test_exported_models_match_eager(trained: tuple[str, Path], tmp_path: Path) -> None:
    import torch

    from medunet.export import load_program
    from medunet.networks import ValidUNet, load_weights

    _, out = trained
    tile = [1, 1, 188, 188]
    run(
        [
            PYTHON,
            "-m",
            "monai.bundle",
            "ckpt_export",
            "network_def",
            "--filepath",
            str(tmp_path / "model.ts"),
            "--ckpt_file",
            str(out / "best_model.pt"),
            "--key_in_ckpt",
            "model",
            "--meta_file",
            "bundles/unet2d/configs/metadata.json",
            "--config_file",
            "bundles/unet2d/configs/inference.json",
            "--use_trace",
            "True",
            "--input_shape",
            str(tile),
        ],
        tmp_path / "ckpt_export.log",
    )
    run(
        [
            PYTHON,
            "-m",
            "medunet.cli",
            "export",
            "--config-file",
            "bundles/unet2d/configs/train.json",
            "--ckpt-path",
            str(out / "best_model.pt"),
            "--input-tile",
            "188",
            "188",
            "--output",
            str(tmp_path / "model.pt2"),
        ],
        tmp_path / "export.log",
    )
    eager = load_weights(ValidUNet(), out / "best_model.pt").eval()
    x = torch.randn(*tile)
    with torch.inference_mode():
        reference = eager(x)
        traced = torch.jit.load(str(tmp_path / "model.ts"))(x)
        program = load_program(tmp_path / "model.pt2")(x)
    assert float((traced - reference).abs().max()) <= 1e-5
    assert float((program - reference).abs().max()) <= 1e-5
    assert float(reference.abs().max()) > 0
    with zipfile.ZipFile(tmp_path / "model.ts") as archive:  # what MONAI Deploy reads to run the model
        embedded = {Path(name).name for name in archive.namelist() if "/extra/" in name}
    assert {"inference.json", "metadata.json"} <= embedded, embedded


REQUIRED_META = [
    "version",
    "monai_version",
    "pytorch_version",
    "numpy_version",
    "required_packages_version",
    "task",
    "description",
    "authors",
    "copyright",
    "network_data_format",
    "changelog",
]
REQUIRED_TENSOR = [
    "type",
    "format",
    "num_channels",
    "spatial_shape",
    "dtype",
    "value_range",
    "is_patch_data",
    "channel_def",
]


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_has_schema_fields_and_true_shape_relation(name: str) -> None:
    """MONAI's verify_metadata downloads its schema; the required fields are checked here offline."""
    from monai.bundle import ConfigParser

    meta = json.loads((REPO / "bundles" / name / "configs" / "metadata.json").read_text())
    assert not [k for k in REQUIRED_META if k not in meta]
    fmt = meta["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    for tensor in (image, pred):
        assert not [k for k in REQUIRED_TENSOR if k not in tensor]
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / name / "configs" / "train.json")
    net = parser.get_parsed_content("network_def")
    assert image["num_channels"] == net.in_channels
    assert pred["num_channels"] == net.out_channels
    for n in range(6):  # from n = 0: MONAI's checks start at small n
        in_shape = [eval(expr, {"n": n}) for expr in image["spatial_shape"]]
        out_shape = [eval(expr, {"n": n}) for expr in pred["spatial_shape"]]
        assert net.geometry.is_valid_input_shape(in_shape)
        assert list(net.output_shape(in_shape)) == out_shape


@pytest.mark.parametrize("name", BUNDLES)
def test_monai_verify_net_in_out_passes_at_its_defaults(name: str, caplog: pytest.LogCaptureFixture) -> None:
    from monai.bundle import verify_net_in_out

    bundle = REPO / "bundles" / name
    with caplog.at_level("INFO"):
        verify_net_in_out(
            "network_def",
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "inference.json"),
            device="cpu",
        )  # raises when the network's output shape is not what metadata.json says for the default n
    assert "data shape of network is verified with no error" in caplog.text
