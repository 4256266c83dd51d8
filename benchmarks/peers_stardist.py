"""StarDist 2D trained from scratch for a CPU budget, then applied to validation images (run by benchmarks/peers.py).

Runs in the peers' own environment (``.venv-peers``: stardist and tensorflow, which medunet does not depend on),
so it imports neither medunet nor torch. It follows StarDist's example notebook for DSB 2018
(``examples/2D/2_training.ipynb``): ``Config2D(n_rays=32, grid=(2, 2), n_channel_in=1)``, percentile
normalisation (1, 99.8), random flips / 90-degree rotations and intensity jitter, 10 % of the training images held
out for its own threshold optimisation; training stops when the budget is spent (a Keras callback), after a
whole step.

Usage: python peers_stardist.py DATALIST OUTPUT_DIR --seconds N [--seed S]
(DATALIST: JSON with "training" and "validation" lists of {"image", "label"} paths; OUTPUT_DIR gets
``<name>_instances.png`` for every validation image and ``stardist.json`` with what ran.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from peer_images import gray
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datalist")
    parser.add_argument("output_dir")
    parser.add_argument("--seconds", type=float, required=True, help="training budget (wall clock)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epoch-steps", type=int, default=100)
    args = parser.parse_args()

    import tensorflow as tf
    from csbdeep.utils import normalize
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    rng = np.random.default_rng(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - StarDist draws its training patches from the global generator
    tf.random.set_seed(args.seed)
    datalist = json.loads(Path(args.datalist).read_text())
    train = datalist["training"]
    order = rng.permutation(len(train))
    held = {int(i) for i in order[: max(1, len(train) // 10)]}
    x = [normalize(gray(c["image"]), 1, 99.8) for c in train]
    y = [fill_label_holes(np.asarray(Image.open(c["label"])).astype(np.int32)) for c in train]
    x_trn = [a for i, a in enumerate(x) if i not in held]
    y_trn = [a for i, a in enumerate(y) if i not in held]
    x_val = [a for i, a in enumerate(x) if i in held]
    y_val = [a for i, a in enumerate(y) if i in held]

    def augmenter(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = rng.integers(4)
        img, mask = np.rot90(img, k), np.rot90(mask, k)
        for axis in (0, 1):
            if rng.random() < 0.5:
                img, mask = np.flip(img, axis), np.flip(mask, axis)
        img = img * rng.uniform(0.6, 2) + rng.uniform(-0.2, 0.2)
        return img, mask

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Config2D(
        n_rays=32, grid=(2, 2), n_channel_in=1, train_steps_per_epoch=args.epoch_steps, train_tensorboard=False
    )
    model = StarDist2D(config, name="stardist", basedir=str(out / "model"))

    class Budget(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.perf_counter()
            self.steps = 0

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            self.steps += 1
            if time.perf_counter() - self.start > args.seconds:
                self.model.stop_training = True

    budget = Budget()
    model.prepare_for_training()
    model.callbacks.append(budget)
    cpu_start = time.process_time()
    model.train(x_trn, y_trn, validation_data=(x_val, y_val), augmenter=augmenter, epochs=10_000)
    train_seconds = time.perf_counter() - budget.start
    train_cpu = time.process_time() - cpu_start
    model.optimize_thresholds(x_val, y_val)
    names, seconds = [], 0.0
    for case in datalist["validation"]:
        name = Path(case["image"]).name.rsplit(".", 1)[0]
        image = normalize(gray(case["image"]), 1, 99.8)
        start = time.perf_counter()
        labels, _ = model.predict_instances(image)
        seconds += time.perf_counter() - start
        Image.fromarray(labels.astype(np.uint16)).save(out / f"{name}_instances.png")
        names.append(name)
    (out / "stardist.json").write_text(
        json.dumps(
            {
                "stardist_config": {
                    "n_rays": 32,
                    "grid": [2, 2],
                    "patch": list(config.train_patch_size),
                    "batch_size": config.train_batch_size,
                    "steps_per_epoch": args.epoch_steps,
                },
                "train_images": len(x_trn),
                "threshold_images": len(x_val),
                "steps": budget.steps,
                "train_seconds": round(train_seconds, 1),
                "train_cpu_seconds": round(train_cpu, 1),
                "budget_seconds": args.seconds,
                "predict_seconds": round(seconds, 2),
                "validation_images": len(names),
                "thresholds": {"prob": float(model.thresholds.prob), "nms": float(model.thresholds.nms)},
                "tensorflow": tf.__version__,
                "machine": platform.machine(),
                "cores": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
