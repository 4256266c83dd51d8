"""torchrun with 2 processes on the CPU (gloo): data-parallel training and distributed batch inference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from tests.bundles.test_bundles import only_run, run

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def torchrun(workflow: str, config_files: list[str], log: Path, **overrides: object) -> str:
    files = "[" + ",".join(f"'{f}'" for f in config_files) + "]"
    cmd = [
        TORCHRUN,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        workflow,
        "--config_file",
        files,
    ]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return run(cmd, log)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    torchrun(
        "training",
        ["bundles/unet2d/configs/train.json", "bundles/unet2d/configs/multi_gpu_train.json", "configs/smoke.json"],
        out.parent / "train.log",
        output_dir=out,
        **{"default_data#n_training": 4},
    )
    return out


def test_ranks_train_on_disjoint_shards_and_end_identical(ddp_run: Path) -> None:
    audits = [json.loads((ddp_run / "audit" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in range(2):
        shard0, shard1 = set(audits[0]["samples"][epoch]), set(audits[1]["samples"][epoch])
        assert shard0
        assert shard1
        assert not shard0 & shard1
        assert len(shard0 | shard1) == 4  # together they cover the 4 training images
    assert audits[0]["weights_sha256"] == audits[1]["weights_sha256"]


def test_one_mlflow_run_and_one_set_of_checkpoints(ddp_run: Path) -> None:
    run_ = only_run(f"sqlite:///{ddp_run / 'mlflow' / 'mlflow.db'}")
    client = mlflow.MlflowClient(f"sqlite:///{ddp_run / 'mlflow' / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(run_.info.run_id, "val_mean_dice")] == [1, 2]
    assert sorted(p.name for p in ddp_run.glob("*.pt")) == ["best_model.pt", "checkpoint_epoch=2.pt"]
    assert not list(ddp_run.glob(".*.tmp"))


def test_distributed_inference_writes_each_case_once_like_single_process(ddp_run: Path, tmp_path: Path) -> None:
    images = ddp_run / "default_data" / "imagesTr"
    ckpt = ddp_run / "best_model.pt"
    torchrun(
        "inference",
        ["bundles/unet2d/configs/inference.json", "bundles/unet2d/configs/multi_gpu_inference.json"],
        tmp_path / "ddp_infer.log",
        input_dir=images,
        output_dir=tmp_path / "ddp",
        ckpt_path=ckpt,
    )
    run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "inference",
            "--config_file",
            "bundles/unet2d/configs/inference.json",
            "--input_dir",
            str(images),
            "--output_dir",
            str(tmp_path / "single"),
            "--ckpt_path",
            str(ckpt),
        ],
        tmp_path / "single_infer.log",
    )
    summary = json.loads((tmp_path / "ddp" / "inference_summary.json").read_text())
    n_cases = len(list(images.glob("*.png")))
    assert summary["cases"] == n_cases
    assert summary["duplicates"] == []
    assert all(len(part) > 0 for part in summary["per_rank"].values())
    single = sorted((tmp_path / "single").glob("*.png"))
    distributed = sorted((tmp_path / "ddp").glob("*.png"))
    assert [p.name for p in single] == [p.name for p in distributed]
    for a, b in zip(single, distributed):
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
