"""Training throughput: the bundle's trainer against a bare PyTorch loop, in one run.

Writes benchmarks/results/training.json and training.md:
- iterations per second of ``bundles/unet2d``'s ``SupervisedTrainer`` (with its handlers: LR schedule,
  stats, MLflow logging of every iteration, atomic checkpoints) and of a bare loop with the same network,
  optimiser, loss, batches and data loader; their ratio (goal >= 0.9);
- the fraction of the trainer's time spent waiting for the data loader.
Validation is switched off for the measurement (it is not part of an iteration).

Usage: ``python benchmarks/training.py [--iterations N] [--output-tile OUT]``.
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
            "output_tile": [tile, tile],
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


def _epoch_seconds(log: str) -> list[float]:
    """Per-epoch times from the trainer's log lines (the slowest rank per epoch)."""
    import re

    per_epoch: dict[int, float] = {}
    for m in re.finditer(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)", log):
        seconds = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
        per_epoch[int(m.group(1))] = max(per_epoch.get(int(m.group(1)), 0.0), seconds)
    return [per_epoch[k] for k in sorted(per_epoch)]


def distributed_scaling(tile: int, epochs: int, images: int = 8) -> dict[str, Any]:
    """Images per second of the bundle run by torchrun with 1 and with 2 processes (gloo on the CPU; the
    machine's 2 cores are shared: 2 threads for one process, 1 thread each for two). Epoch 1 is warm-up."""
    import os
    import subprocess
    import sys

    torchrun = str(Path(sys.executable).parent / "torchrun")
    results: dict[str, Any] = {}
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                torchrun,
                "--standalone",
                f"--nproc_per_node={nproc}",
                "-m",
                "monai.bundle",
                "run",
                "training",
                "--config_file",
                "['bundles/unet2d/configs/train.json','bundles/unet2d/configs/multi_gpu_train.json']",
                "--output_dir",
                f"{tmp}/run",
                "--epochs",
                str(epochs),
                "--val_interval",
                str(epochs + 1),
                "--output_tile",
                f"[{tile}, {tile}]",
                "--num_workers",
                "0",
                "--default_data#n_training",
                str(images),
                "--default_data#n_validation",
                "2",
            ]
            env = {**os.environ, "OMP_NUM_THREADS": str(2 // nproc)}
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=True)
            times = _epoch_seconds(proc.stdout + proc.stderr)[1:]
            results[f"{nproc}_process"] = {
                "epoch_seconds": [round(t, 2) for t in times],
                "images_per_s": round(images / float(sum(times) / len(times)), 3),
            }
    results["speedup_2_over_1"] = round(results["2_process"]["images_per_s"] / results["1_process"]["images_per_s"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--output-tile", type=int, default=100, help="output tile side (the input tile is +184)")
    parser.add_argument("--skip-distributed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        # one warm-up pass each builds the data set and the caches, so both measurements see the same state
        data_dir = Path(tmp) / "run"
        bundle_trainer(Path(tmp) / "warm", args.output_tile, 1)
        bare = bare_loop(data_dir / "bare", args.output_tile, args.epochs)
        bundle = bundle_trainer(data_dir / "bundle", args.output_tile, args.epochs)
        bare_again = bare_loop(data_dir / "bare2", args.output_tile, args.epochs)
    bare_best = max(bare["its_per_s"], bare_again["its_per_s"])
    result = {
        "machine": f"{platform.machine()}, torch {torch.__version__}, 2 threads",
        "network": "unet2d (paper network, 31.0 M parameters)",
        "input_tile": args.output_tile + 184,
        "batch_size": 1,
        "epochs": args.epochs,
        "bundle": bundle,
        "bare_loop": [bare, bare_again],
        "ratio_bundle_over_bare": round(bundle["its_per_s"] / bare_best, 3),
    }
    if not args.skip_distributed:
        result["distributed"] = distributed_scaling(args.output_tile, args.epochs + 1)
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
    if "distributed" in result:
        d = result["distributed"]
        lines += [
            "",
            "## torchrun (DDP, gloo) on this 2-core machine",
            "",
            "| processes | threads each | images/s | epoch seconds (after warm-up) |",
            "|---|---|---|---|",
            f"| 1 | 2 | {d['1_process']['images_per_s']:.3f} | {d['1_process']['epoch_seconds']} |",
            f"| 2 | 1 | {d['2_process']['images_per_s']:.3f} | {d['2_process']['epoch_seconds']} |",
            "",
            f"Speed-up 2 / 1 processes: {d['speedup_2_over_1']:.2f}x. Two processes share the same two cores here, so no",
            "gain is expected; the run shows the distributed path works and what it costs (gradient all-reduce of",
            "31 M parameters per step over gloo). On GPUs, with one process per GPU and NCCL, data-parallel training",
            "of this network scales close to linearly with the number of GPUs while the per-GPU batch keeps a GPU busy",
            "(the all-reduce of 124 MB of gradients overlaps with the backward pass).",
        ]
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
