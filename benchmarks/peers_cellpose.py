"""Cellpose (its CNN, version 3) trained from scratch for a CPU budget, then applied to validation images (run by
benchmarks/peers.py).

Runs in its own environment (``.venv-cellpose``: cellpose 3.1 and a CPU build of torch; its numpy pin conflicts
with StarDist's tensorflow, and medunet depends on neither), so it imports no medunet. It follows Cellpose's own
training function with its defaults (``cellpose.train.train_seg``: AdamW, learning rate 0.005 with a 10-epoch
warm-up, weight decay 1e-5, batch 8 of 224x224 random rotate-and-resize crops, all training images every epoch,
flows computed from the labels first) on a network built without weights (``CellposeModel(pretrained_model=False,
diam_mean=17)``, 32-256 features, the nuclei model's mean diameter). Cellpose has no time budget of its own: a
forward pre-hook stops training at the first training step after the budget (flows included) is spent. Over a
budget shorter than 300 epochs Cellpose's schedule is the warm-up followed by a constant rate, so the stop cuts no
decay short. Images: grey (the mean of the colour channels), ``channels=[0, 0]``, Cellpose's own percentile
normalisation; predictions at the training's mean diameter (``diameter=None``).

Usage: python peers_cellpose.py DATALIST OUTPUT_DIR --seconds N [--seed S]
(writes ``<name>_instances.png`` for every validation image and ``cellpose.json`` with what ran.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from peer_images import gray
from PIL import Image


class BudgetSpent(Exception):
    """Raised by the forward pre-hook once the training budget is spent."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datalist")
    parser.add_argument("output_dir")
    parser.add_argument("--seconds", type=float, required=True, help="training budget (wall clock)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import cellpose
    import torch
    from cellpose import models, train

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - Cellpose draws from the global generator (it reseeds per epoch)
    datalist = json.loads(Path(args.datalist).read_text())
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = [gray(c["image"]) for c in datalist["training"]]
    y = [np.asarray(Image.open(c["label"])).astype(np.int32) for c in datalist["training"]]
    model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=17.0, nchan=2)
    state = {"start": time.perf_counter(), "steps": 0}

    def stop_when_spent(module: torch.nn.Module, inputs: object) -> None:
        if module.training:
            if time.perf_counter() - state["start"] > args.seconds:
                raise BudgetSpent
            state["steps"] += 1

    hook = model.net.register_forward_pre_hook(stop_when_spent)
    cpu_start = time.process_time()
    with contextlib.suppress(BudgetSpent):  # the budget's end, not an error
        train.train_seg(
            model.net, train_data=x, train_labels=y, channels=[0, 0], normalize=True, n_epochs=10_000,
            save_path=str(out), save_every=10_000, min_train_masks=1, model_name="cellpose_scratch",
        )  # fmt: skip
    train_seconds = time.perf_counter() - state["start"]
    train_cpu = time.process_time() - cpu_start
    hook.remove()
    model.net.eval()
    model.diam_labels = float(model.net.diam_labels.item())
    seconds, names = 0.0, []
    for case in datalist["validation"]:
        name = Path(case["image"]).name.rsplit(".", 1)[0]
        start = time.perf_counter()
        masks = model.eval(gray(case["image"]), channels=[0, 0], diameter=None)[0]
        seconds += time.perf_counter() - start
        Image.fromarray(np.asarray(masks).astype(np.uint16)).save(out / f"{name}_instances.png")
        names.append(name)
    record = {
        "cellpose": cellpose.version if hasattr(cellpose, "version") else "3",
        "torch": torch.__version__,
        "config": {
            "features": [32, 64, 128, 256],
            "batch_size": 8,
            "bsize": 224,
            "learning_rate": 0.005,
            "weight_decay": 1e-5,
            "optimizer": "AdamW",
            "diam_mean": 17.0,
        },
        "train_images": len(x),
        "steps": state["steps"],
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "budget_seconds": args.seconds,
        "diam_labels": model.diam_labels,
        "predict_seconds": round(seconds, 2),
        "validation_images": len(names),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
    }
    (out / "cellpose.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
