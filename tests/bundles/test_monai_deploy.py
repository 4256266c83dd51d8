"""medunet's unet3d bundle inside a MONAI Deploy App SDK application (tests/bundles/monai_deploy_app.py) on a
TCIA series: the SDK removes the bundle's loader and writers, runs the exported TorchScript model with the
bundle's own inferer, and writes the SEG with its own writer; the SEG must equal medunet's own.

The SDK lives in .venv-deploy (``bash scripts/setup_deploy.sh``, run by the test set-up where it installs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ckpt_export

from medunet.io import load_image
from medunet.io.dicom_seg import read_dicom_seg
from medunet.networks import ValidUNet
from tests.conftest import REPO, require

DEPLOY_PYTHON = REPO / ".venv-deploy" / "bin" / "python"
SMALL = {"features": [4, 8, 16, 32], "pool_sizes": [[2, 2, 1], [2, 2, 1], [2, 2, 1]], "output_tile": [68, 68, 24]}


def _run(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, timeout=600, env=env, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{log.read_text()[-4000:]}"


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    """A copy of the unet3d bundle with a small network of fixed random weights in models/model.pt (the
    workflow, not the model, is under test), its settings written into the copy's inference.json."""
    bundle = tmp_path / "unet3d"
    shutil.copytree(REPO / "bundles" / "unet3d", bundle, ignore=shutil.ignore_patterns("*.pt", "*.ts"))
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config.update({**SMALL, "intensity_preset": "mr", "device": "cpu", "write_instances": False})
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(0)
    net = ValidUNet(3, 1, 2, features=SMALL["features"], norm="batch", pool_sizes=SMALL["pool_sizes"])
    with torch.no_grad():
        net.head.bias[1] -= 0.9  # about half of the T1post volume is then foreground: a boundary to agree on
    (bundle / "models").mkdir(exist_ok=True)
    torch.save({"model": net.state_dict()}, bundle / "models" / "model.pt")
    return bundle


@pytest.mark.skipif(not DEPLOY_PYTHON.exists(), reason="MONAI Deploy App SDK not set up (bash scripts/setup_deploy.sh)")
def test_monai_deploy_app_writes_the_same_seg_as_medunet(small_bundle: Path, shared_data: Path, tmp_path: Path) -> None:
    series = require(shared_data / "tcia_pgbm001_dicom" / "T1post")
    tile = ValidUNet(3, 1, 2, features=SMALL["features"], pool_sizes=SMALL["pool_sizes"]).input_shape_for(
        SMALL["output_tile"]
    )
    # the export as the bundle's README documents it (in this process: the same function as the command line)
    ckpt_export(
        "network_def",
        filepath=str(small_bundle / "models" / "model.ts"),
        ckpt_file=str(small_bundle / "models" / "model.pt"),
        key_in_ckpt="model",
        meta_file=str(small_bundle / "configs" / "metadata.json"),
        config_file=str(small_bundle / "configs" / "inference.json"),
        use_trace=True,
        input_shape=[1, 1, *tile],
    )
    # medunet's own inference (default ckpt_path: models/model.pt of the bundle the config file belongs to)
    ours, folder = tmp_path / "medunet", tmp_path / "input" / "T1post"
    shutil.copytree(series, folder)
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(small_bundle / "configs" / "inference.json"),
          "--input_dir", str(folder.parent), "--output_dir", str(ours)],
         tmp_path / "medunet.log", cwd=tmp_path)  # fmt: skip
    # the MONAI Deploy app, reading the exported TorchScript bundle
    sdk_out = tmp_path / "sdk"
    env = {**os.environ, "HOLOSCAN_INPUT_PATH": str(series), "HOLOSCAN_OUTPUT_PATH": str(sdk_out),
           "HOLOSCAN_MODEL_PATH": str(small_bundle / "models" / "model.ts")}  # fmt: skip
    _run([str(DEPLOY_PYTHON), str(REPO / "tests" / "bundles" / "monai_deploy_app.py")],
         tmp_path / "sdk.log", cwd=tmp_path, env=env)  # fmt: skip

    source = load_image(series)
    uids = source.meta["SOPInstanceUIDs"]
    [our_seg] = ours.glob("T1post_seg.dcm")
    [sdk_seg] = sdk_out.rglob("*.dcm")
    expected, got = read_dicom_seg(our_seg, uids), read_dicom_seg(sdk_seg, uids)
    assert 0.2 < expected.mean() < 0.8, expected.mean()
    differ = int((expected != got).sum())
    assert differ <= expected.size * 1e-5, f"{differ} of {expected.size} voxels differ"
