"""Run bookkeeping for MLflow: code version, the embedded store, logged parameters, the merged config."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import medunet
from medunet.engines.distributed import process_rank
from medunet.utils.files import atomic_write_json
from medunet.utils.redact import redact_credentials

__all__ = ["code_version", "default_tracking_uri", "experiment_params", "write_run_config"]


def code_version() -> str:
    """medunet's version, plus the git commit when running from a checkout."""
    root = Path(medunet.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{medunet.__version__}+{commit}" if commit else medunet.__version__


def default_tracking_uri(output_dir: str | Path) -> str:
    """MLflow's embedded store for a run: a SQLite database under ``<output_dir>/mlflow``."""
    folder = Path(output_dir).resolve() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def experiment_params(datalist: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Parameters logged to MLflow: hyper-parameters plus data set name and size, code version, device.

    Only the data set's name and case counts are logged, never file names or DICOM attributes, so no patient
    identifier reaches the tracking store.
    """
    out = {k: (json.dumps(v) if isinstance(v, (list, tuple, dict)) else v) for k, v in params.items()}
    out.update(
        {
            "dataset": datalist.get("name", "unnamed"),
            "n_training": len(datalist.get("training", [])),
            "n_validation": len(datalist.get("validation", [])),
            "code_version": code_version(),
            "torch_version": torch.__version__,
        }
    )
    return out


_RUN_ARGS = {"config_file", "meta_file", "logging_file", "args_file", "tracking", "run_id", "init_id", "final_id"}


def _parse_cli_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Config files and ``--key value`` overrides from a ``python -m monai.bundle run ...`` command line."""
    files: list[str] = []
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, sep, value = arg[2:].partition("=")
            if not sep and i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            try:
                parsed: Any = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = value
            if key == "config_file":
                files = [str(f) for f in (parsed if isinstance(parsed, (list, tuple)) else [parsed])]
            elif key not in _RUN_ARGS:
                overrides[key] = parsed
        i += 1
    return files, overrides


def write_run_config(output_dir: str | Path, argv: Sequence[str] | None = None) -> str | None:
    """Writes the merged configuration of this run (config files + command-line overrides, unresolved) to
    ``<output_dir>/config_merged.json`` and returns its path (None when not started from the bundle CLI, and on
    every ``torchrun`` process but rank 0, which keeps the run's records).

    MONAI's ``--tracking mlflow`` logs its own copy only when ``output_dir`` is an expression; this file is
    what medunet logs to MLflow in every run. Credentials (a password in a URI, a value under a key named like a
    secret) are replaced by ``***`` (:func:`medunet.utils.redact.redact_credentials`).
    """
    from monai.bundle import ConfigParser

    if process_rank() != 0:
        return None
    files, overrides = _parse_cli_overrides(list(sys.argv[1:] if argv is None else argv))
    if not files:
        return None
    parser = ConfigParser()
    parser.read_config(files)
    parser.update(overrides)
    path = Path(output_dir) / "config_merged.json"
    merged = redact_credentials({"config_files": files, "overrides": overrides, "config": parser.get()})
    return str(atomic_write_json(path, merged, indent=2, default=str))
