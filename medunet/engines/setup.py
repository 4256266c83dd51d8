"""Small typed functions the bundle configs call, so the JSON only wires objects."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import load_decathlon_datalist

import medunet
from medunet.data.datasets import make_default_dataset

__all__ = [
    "check_checkpoint",
    "code_version",
    "default_tracking_uri",
    "experiment_params",
    "gather_inference_summary",
    "inference_datalist",
    "make_optimizer",
    "resolve_datalist",
    "resume_handler",
    "resync_learning_rate",
    "run_training",
    "write_run_config",
]

logger = logging.getLogger(__name__)


def resolve_datalist(
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    spatial_dims: int = 2,
    default_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The data list a bundle trains on, with absolute paths.

    - ``dataset_dir`` empty: medunet's generated default data set in ``<output_dir>/default_data``
      (made once, reused afterwards; ``default_data`` passes options to
      :func:`medunet.data.datasets.make_default_dataset`, e.g. ``{"n_training": 2, "shape": [96, 96]}``);
    - a folder with ``dataset.json`` or a JSON file: that decathlon-format list.

    Raises:
        FileNotFoundError: the folder / file is missing or has no ``dataset.json``.
    """
    if not dataset_dir:
        listing = make_default_dataset(
            Path(output_dir) / "default_data", spatial_dims=spatial_dims, **(default_data or {})
        )
    else:
        path = Path(dataset_dir)
        listing = path / "dataset.json" if path.is_dir() else path
        if not listing.is_file():
            raise FileNotFoundError(
                f"dataset_dir={dataset_dir!s}: no dataset.json there; give a folder holding a decathlon-format "
                "dataset.json, the JSON file itself, or leave dataset_dir empty for the generated default data"
            )
    content = json.loads(listing.read_text())
    result: dict[str, Any] = {k: v for k, v in content.items() if k not in ("training", "validation", "test")}
    for section in ("training", "validation"):
        result[section] = load_decathlon_datalist(listing, data_list_key=section) if section in content else []
    if not result["training"]:
        raise ValueError(f"{listing}: the 'training' list is empty")
    if not result["validation"]:
        logger.warning("%s has no 'validation' list: validating on the training cases", listing)
        result["validation"] = list(result["training"])
    result["source"] = str(listing)
    return result


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    learning_rate: float,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``"sgd"`` (the paper: momentum 0.99) or ``"adam"``."""
    kind = name.lower()
    if kind == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"optimizer_name={name!r} is not supported; valid options are 'sgd', 'adam'")


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
    ``<output_dir>/config_merged.json`` and returns its path (None when not started from the bundle CLI).

    MONAI's ``--tracking mlflow`` logs its own copy only when ``output_dir`` is an expression; this file is
    what medunet logs to MLflow in every run.
    """
    from monai.bundle import ConfigParser

    files, overrides = _parse_cli_overrides(list(sys.argv[1:] if argv is None else argv))
    if not files:
        return None
    parser = ConfigParser()
    parser.read_config(files)
    parser.update(overrides)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config_merged.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({"config_files": files, "overrides": overrides, "config": parser.get()}, indent=2, default=str)
    )
    tmp.replace(path)
    return str(path)


def resume_handler(output_dir: str | Path, load_dict: dict[str, Any], resume: bool = True) -> Any:
    """MONAI's ``CheckpointLoader`` for the latest checkpoint in ``output_dir``, or None (fresh start)."""
    from monai.handlers import CheckpointLoader

    from medunet.engines.checkpoints import latest_checkpoint

    path = latest_checkpoint(output_dir) if resume else None
    if path is None:
        return None
    logger.info("resuming from %s", path)
    return CheckpointLoader(
        load_path=path, load_dict=load_dict, map_location={"cuda:0": "cpu"} if not torch.cuda.is_available() else None
    )


def run_training(trainer: Any, attach: Sequence[Any] = (), early_stop: Any = None, lr_scheduler: Any = None) -> None:
    """Attaches handlers that refer to the trainer itself (checkpoints of its state, resume) and runs it.

    Those handlers cannot sit in the trainer's own handler list in a bundle config: that would be a
    circular reference. With ``lr_scheduler``, the learning rate is recomputed for the epoch a resumed run
    starts at (the optimiser state restored from the checkpoint holds the rate of the last step, which for a
    schedule extended by a larger ``epochs`` would be wrong, e.g. 0 at the old end of a decay).
    """
    from ignite.engine import Events

    for handler in attach:
        if handler is not None:
            handler.attach(trainer)
    if early_stop is not None:
        early_stop.set_trainer(trainer)
    if lr_scheduler is not None:
        trainer.add_event_handler(Events.STARTED, lambda _: resync_learning_rate(lr_scheduler))
    trainer.run()


def resync_learning_rate(lr_scheduler: Any) -> None:
    """Sets the optimiser's learning rates to what the scheduler gives for its current epoch."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_lr() outside step() is exactly what is wanted here
        rates = lr_scheduler.get_lr()
    for group, rate in zip(lr_scheduler.optimizer.param_groups, rates):
        group["lr"] = rate


def inference_datalist(input_dir: str | Path) -> list[dict[str, str]]:
    """Cases in ``input_dir`` for inference: NIfTI / 2D image files, and sub-folders holding a DICOM series
    (or ``input_dir`` itself when it holds DICOM files directly).

    Raises:
        FileNotFoundError: ``input_dir`` is missing. ``ValueError``: no case found in it.
    """
    from medunet.io.dicom_series import _read_header
    from medunet.io.image import IMAGE_SUFFIXES, NIFTI_SUFFIXES

    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir={input_dir!s} does not exist or is not a folder")
    suffixes = NIFTI_SUFFIXES + IMAGE_SUFFIXES
    files = sorted(p for p in root.iterdir() if p.is_file())
    if any(_read_header(p) is not None for p in files[:50]):
        return [{"image": str(root)}]
    cases = [{"image": str(p)} for p in files if p.name.lower().endswith(suffixes)]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        inner = sorted(q for q in sub.iterdir() if q.is_file())[:50]
        if any(_read_header(q) is not None for q in inner):
            cases.append({"image": str(sub)})
    if not cases:
        raise ValueError(
            f"input_dir={input_dir!s} holds no NIfTI ({', '.join(NIFTI_SUFFIXES)}), 2D image ({', '.join(IMAGE_SUFFIXES)}) "
            "or DICOM series folder"
        )
    return cases


def check_checkpoint(path: str | Path) -> str:
    """Fails early with a clear message when the checkpoint to evaluate or apply is missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; train first or pass --ckpt_path pointing to a .pt file "
            "(the training run writes best_model.pt and checkpoint_epoch=N.pt into its output_dir)"
        )
    return str(path)


def gather_inference_summary(output_dir: str | Path, cases: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Collects which cases every rank segmented and writes ``<output_dir>/inference_summary.json`` on rank 0
    (returns the summary there, None elsewhere). Without torch.distributed it just writes this process's list."""
    import torch.distributed as dist

    mine = [str(c["image"]) for c in cases]
    if dist.is_available() and dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        rank = dist.get_rank()
    else:
        gathered, rank = [mine], 0
    if rank != 0:
        return None
    every = [c for part in gathered for c in part]
    summary = {
        "ranks": len(gathered),
        "cases": len(every),
        "duplicates": sorted({c for c in every if every.count(c) > 1}),
        "per_rank": {str(r): part for r, part in enumerate(gathered)},
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
