"""Training throughput: the bundle's trainer against a bare PyTorch loop, in one run.

Writes benchmarks/results/training.json and training.md:
- iterations per second of ``bundles/unet2d``'s ``SupervisedTrainer`` (with its handlers: LR schedule,
  stats, MLflow logging of every iteration, atomic checkpoints) and of a bare loop with the same network,
  optimiser, loss, batches and data loader; their ratio (goal >= 0.9);
- the fraction of the trainer's time spent waiting for the data loader.
Validation is switched off for the measurement (it is not part of an iteration).

Usage: ``python benchmarks/training.py [--iterations N] [--tile OUT]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.utils import set_determinism

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def build(output_dir: Path, tile: int, epochs: int) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / "bundles/unet2d/configs/train.json")])
    parser.update(
        {
            "output_dir": str(output_dir),
            "epochs": epochs,
            "val_interval": epochs + 1,
            "tile_output": [tile, tile],
            "samples_per_image": 1,
            "num_workers": 2,
            "default_data#n_training": 16,
            "default_data#n_validation": 1,
        }
    )
    return parser


def bundle_trainer(output_dir: Path, tile: int, epochs: int) -> dict[str, Any]:
    set_determinism(seed=0)
    parser = build(output_dir, tile, epochs)
    trainer = parser.get_parsed_content("train#trainer")
    saver = parser.get_parsed_content("checkpoint_saver")
    saver.attach(trainer)
    waits: list[float] = []
    marks: dict[str, float] = {}
    trainer.add_event_handler(Events.GET_BATCH_STARTED, lambda _: marks.__setitem__("b", time.perf_counter()))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, lambda _: waits.append(time.perf_counter() - marks["b"]))
    # Epochs are timed from the first epoch start to the last epoch end (after the per-epoch handlers, e.g. the
    # checkpoint): one-off work at start and completion (MLflow run set-up, logging the model) is excluded.
    trainer.add_event_handler(Events.EPOCH_STARTED(once=1), lambda _: marks.__setitem__("start", time.perf_counter()))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: marks.__setitem__("end", time.perf_counter()))
    trainer.run()
    total = marks["end"] - marks["start"]
    iterations = trainer.state.iteration
    return {
        "iterations": iterations,
        "seconds": total,
        "its_per_s": iterations / total,
        "loader_wait_fraction": sum(waits) / total,
    }


def bare_loop(output_dir: Path, tile: int, epochs: int) -> dict[str, Any]:
    set_determinism(seed=0)
    parser = build(output_dir, tile, epochs)
    loader = parser.get_parsed_content("train#dataloader")
    network = parser.get_parsed_content("network")
    loss_fn = parser.get_parsed_content("loss")
    optimizer = parser.get_parsed_content("optimizer")
    prepare = parser.get_parsed_content("train#prepare_batch")
    device = torch.device(parser.get_parsed_content("device"))
    iterations = 0
    wait = 0.0
    start = time.perf_counter()
    for _ in range(epochs):
        network.train()
        fetch = time.perf_counter()
        for batch in loader:
            wait += time.perf_counter() - fetch
            x, y = prepare(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(x), y)
            loss.backward()
            optimizer.step()
            iterations += 1
            fetch = time.perf_counter()
    total = time.perf_counter() - start
    return {
        "iterations": iterations,
        "seconds": total,
        "its_per_s": iterations / total,
        "loader_wait_fraction": wait / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tile", type=int, default=100, help="output tile side (the input tile is +184)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        # one warm-up pass each builds the data set and the caches, so both measurements see the same state
        data_dir = Path(tmp) / "run"
        bundle_trainer(Path(tmp) / "warm", args.tile, 1)
        bare = bare_loop(data_dir / "bare", args.tile, args.epochs)
        bundle = bundle_trainer(data_dir / "bundle", args.tile, args.epochs)
        bare_again = bare_loop(data_dir / "bare2", args.tile, args.epochs)
    bare_best = max(bare["its_per_s"], bare_again["its_per_s"])
    result = {
        "machine": f"{platform.machine()}, torch {torch.__version__}, 2 threads",
        "network": "unet2d (paper network, 31.0 M parameters)",
        "input_tile": args.tile + 184,
        "batch_size": 1,
        "epochs": args.epochs,
        "bundle": bundle,
        "bare_loop": [bare, bare_again],
        "ratio_bundle_over_bare": round(bundle["its_per_s"] / bare_best, 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Training throughput",
        "",
        f"{result['machine']}; paper network, input tile {result['input_tile']} px, batch 1, {args.epochs} epochs of 16 images (one tile each); the bundle saves a checkpoint (model + optimiser, about 250 MB, written atomically) after every epoch.",
        "",
        "| loop | iterations | seconds | it/s | data-loader wait |",
        "|---|---|---|---|---|",
        f"| bundle SupervisedTrainer | {bundle['iterations']} | {bundle['seconds']:.1f} | {bundle['its_per_s']:.3f} | {bundle['loader_wait_fraction']:.1%} |",
    ]
    lines += [
        f"| bare PyTorch loop (run {i + 1}) | {b['iterations']} | {b['seconds']:.1f} | {b['its_per_s']:.3f} | {b['loader_wait_fraction']:.1%} |"
        for i, b in enumerate([bare, bare_again])
    ]
    lines += ["", f"Ratio bundle / best bare loop: **{result['ratio_bundle_over_bare']:.3f}** (goal >= 0.9)."]
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
