"""The 2D bundle on the ISBI 2012 EM slices (the U-Net paper's benchmark) under a stated CPU budget.

Trains ``bundles/unet2d`` with ``configs/isbi2012_em.json`` (slices 00-19 train, 20-24 validate) through the
documented command, reads the run back from MLflow and writes:
- benchmarks/results/isbi2012.json (settings, wall time, validation metrics per epoch),
- benchmarks/results/isbi2012_learning_curve.png (training loss and validation Dice / Rand error).

Usage: ``python benchmarks/isbi2012.py [--epochs N] [--output-dir DIR]``. Needs ../shared/data/isbi2012_em
(or $MEDUNET_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument(
        "--output-tile", type=int, default=116, help="output tile side (input tile = output tile + 184)"
    )
    parser.add_argument("--output-dir", default=str(REPO / "outputs" / "isbi2012"))
    args = parser.parse_args()
    out = Path(args.output_dir)
    settings = {
        "epochs": args.epochs,
        "val_interval": 3,
        "output_tile": f"[{args.output_tile}, {args.output_tile}]",
        "samples_per_image": 2,
        "optimizer_name": "adam",
        "learning_rate": 0.0001,
        "num_workers": 2,
    }
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        "['bundles/unet2d/configs/train.json','configs/isbi2012_em.json']",
        "--output_dir",
        str(out),
    ]
    for key, value in settings.items():
        cmd += [f"--{key}", str(value)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    wall = time.perf_counter() - start

    uri = f"sqlite:///{out / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time DESC"]
    )
    run = runs[0]
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in ("train_loss", "val_mean_dice", "val_rand_error", "val_pixel_error", "val_mean_iou")
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps, losses = zip(*history["train_loss"])
    ax1.plot(steps, losses, lw=0.6, color="tab:gray", label="training loss (per iteration)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("weighted cross-entropy")
    ax1.set_yscale("log")
    ax1.legend()
    for key, color in (("val_mean_dice", "tab:green"), ("val_rand_error", "tab:red"), ("val_pixel_error", "tab:blue")):
        if history[key]:
            x, y = zip(*history[key])
            ax2.plot(x, y, "o-", color=color, label=key)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.suptitle(f"unet2d on ISBI 2012 (train 00-19, validate 20-24), {wall / 60:.0f} min on 2 CPU cores")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "isbi2012_learning_curve.png", dpi=110)
    best = max(history["val_mean_dice"], key=lambda p: p[1])
    result = {
        "command": " ".join(cmd[1:]),
        "settings": settings,
        "wall_seconds": round(wall, 1),
        "best_val_mean_dice": {"epoch": best[0], "value": round(best[1], 4)},
        "final": {k: round(v[-1][1], 4) for k, v in history.items() if v},
        "validation_history": {k: v for k, v in history.items() if k != "train_loss"},
        "note": "Dice of the cell class (label 255) over the 5 validation slices, whole 512x512 images through overlap-tile inference",
    }
    (RESULTS / "isbi2012.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_seconds", "best_val_mean_dice", "final")}, indent=2))


if __name__ == "__main__":
    main()
