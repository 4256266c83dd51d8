"""Run bookkeeping: the merged config of a bundle command line, the logged parameters."""

from __future__ import annotations

import json
from pathlib import Path

from medunet.engines import experiment_params, write_run_config


def test_run_config_merges_files_and_overrides(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"epochs": 5, "net": {"features": [1, 2]}}))
    b.write_text(json.dumps({"epochs": 2}))
    argv = [
        "run",
        "training",
        "--config_file",
        f"['{a}','{b}']",
        "--output_dir",
        str(tmp_path / "o"),
        "--net#features",
        "[3, 4]",
        "--tracking",
        "mlflow",
    ]
    path = write_run_config(tmp_path / "o", argv)
    assert path is not None
    merged = json.loads(Path(path).read_text())
    assert merged["config"]["epochs"] == 2
    assert merged["config"]["net"]["features"] == [3, 4]
    assert "tracking" not in merged["overrides"]
    assert write_run_config(tmp_path / "o", ["run"]) is None
    assert not list((tmp_path / "o").glob(".*tmp"))


def test_experiment_params_log_counts_not_file_names() -> None:
    datalist = {"name": "set", "training": [{"image": "/secret/patient1.nii.gz"}], "validation": []}
    params = experiment_params(datalist, features=[8, 16], epochs=3)
    assert params["dataset"] == "set"
    assert params["n_training"] == 1
    assert params["features"] == "[8, 16]"
    assert "patient1" not in json.dumps(params)
