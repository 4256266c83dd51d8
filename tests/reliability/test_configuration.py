"""Configuration values of the wrong type give a clear error naming the parameter, instead of another network;
bundle settings given on the command line are checked and converted before any data is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

import medunet.inference
from medunet.engines import SettingsError
from medunet.networks import ValidUNet
from tests.conftest import REPO

CASES = [
    ({"features": "64"}, r"features must be a list of positive integers .* got '64'"),
    ({"features": 64}, r"features must be a list of positive integers .* got 64"),
    ({"features": [16, 32.5, 64]}, r"features\[1\] must be an integer >= 1, got 32\.5"),
    ({"features": [16, True]}, r"features\[1\] must be an integer >= 1, got True \(a bool\)"),
    ({"features": [16, 0]}, r"features\[1\] must be an integer >= 1, got 0"),
    ({"features": []}, r"features must be a non-empty list"),
    ({"in_channels": "1"}, r"in_channels must be an integer >= 1, got '1' \(a str\)"),
    ({"out_channels": 2.5}, r"out_channels must be an integer >= 1, got 2\.5"),
    ({"features": [8, 16], "pool_sizes": ["2"]}, r"pool_sizes\[0\] must be a list of positive integers"),
    ({"features": [8, 16], "pool_sizes": [1.5]}, r"pool_sizes\[0\] must be an integer >= 1, got 1\.5"),
    ({"spatial_dims": 4}, r"spatial_dims must be 1, 2 or 3, got 4"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
]


@pytest.mark.parametrize(("kwargs", "message"), CASES, ids=[str(c[0]) for c in CASES])
def test_network_parameters_of_the_wrong_type_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ValidUNet(**kwargs)


def test_integral_floats_from_json_build_the_same_network() -> None:
    a, b = ValidUNet(features=[8, 16]), ValidUNet(features=[8.0, 16.0], in_channels=1.0)
    assert a.features == b.features == (8, 16)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


# Settings given on a bundle's command line: MONAI's runner passes "--amp true" through as the string "true", and
# "--amp false" as a non-empty string; each is checked and converted before any data is loaded
# (medunet.engines.check_settings, the first expression of every config's "initialize").

TRAIN = ["bundles/unet2d/configs/train.json", "configs/smoke.json"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def _workflow(output_dir: Path, **overrides: object) -> ConfigWorkflow:
    files = [str(REPO / f) for f in TRAIN]
    return ConfigWorkflow(config_file=files, workflow_type=None, output_dir=str(output_dir), **overrides)


BAD_SETTINGS = [
    ({"amp": "maybe"}, "--amp: amp='maybe' is not a boolean; valid values are true/false, 1/0, yes/no (any case)"),
    ({"epochs": 0}, "--epochs: epochs must be an integer >= 1, got 0"),
    pytest.param(
        {"device": "cuda"},
        "--device: device='cuda' is not available: torch",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
    ),
    (
        {"channels_last": "yes please"},
        "--channels_last: channels_last='yes please' is not a boolean; valid values are true/false, 1/0, yes/no",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "message"), BAD_SETTINGS, ids=["amp maybe", "epochs 0", "device cuda", "yes please"]
)
def test_a_bad_setting_stops_the_training_before_any_data_is_loaded(
    overrides: dict, message: str, tmp_path: Path
) -> None:
    start = time.monotonic()
    workflow = _workflow(tmp_path / "out", **overrides)
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps the error of a config expression
        workflow.initialize()
    assert isinstance(caught.value.__cause__, SettingsError)
    assert message in str(caught.value.__cause__)
    assert time.monotonic() - start < 5
    assert not (tmp_path / "out").exists()  # no default data generated, no run folder


def test_the_readme_command_with_a_bad_setting_says_so_within_seconds(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", f"['{TRAIN[0]}','{TRAIN[1]}']",
           "--output_dir", str(tmp_path / "out"), "--amp", "maybe"]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=ENV)
    assert proc.returncode != 0
    assert "--amp: amp='maybe' is not a boolean; valid values are true/false, 1/0, yes/no" in proc.stderr
    assert time.monotonic() - start < 60  # the imports of torch, MONAI and medunet; nothing runs after the check
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("amp", "expected"), [("true", True), ("False", False), (1, True)])
def test_amp_from_the_command_line_trains_with_the_intended_value(amp: object, expected: bool, tmp_path: Path) -> None:
    workflow = _workflow(
        tmp_path / "out", amp=amp, epochs=1, features=[4, 8], output_tile=[20, 20], val_output_tile=[20, 20],
        **{"default_data#n_training": 1, "default_data#n_validation": 1, "default_data#shape": [40, 40]},
    )  # fmt: skip
    workflow.initialize()
    seen: list[tuple[bool, torch.dtype]] = []  # (training, output type) of every forward pass of the epoch
    network = workflow.parser.get_parsed_content("network")
    hook = network.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    # after the epoch's validation (attached earlier, so run first), before the model is logged to MLflow
    workflow.parser.get_parsed_content("train#trainer").add_event_handler(
        Events.EPOCH_COMPLETED, lambda _: hook.remove()
    )
    workflow.run()
    assert {training for training, _ in seen} == {True, False}  # training and validation passes
    dtype = torch.bfloat16 if expected else torch.float32  # AMP on the CPU autocasts to bfloat16
    assert {d for training, d in seen if training} == {dtype}
    # validation runs the inference preset that matches (amp_precision): bfloat16 only where the CPU has it natively
    validation = torch.bfloat16 if expected and medunet.inference.cpu_has_native_bf16() else torch.float32
    assert {d for training, d in seen if not training} == {validation}
    assert (tmp_path / "out" / "checkpoint_epoch=1.pt").is_file()
