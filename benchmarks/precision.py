"""bfloat16 autocast and channels-last on the CPU: speed and accuracy, every mode measured in the same run.

Writes benchmarks/results/precision.json and precision.md:

- **Inference** (one network pass, ``torch.inference_mode``): output voxels per second of the 2D U-Net
  (features 32-512, one 572x572 tile) and of the 3D U-Net (features 32-256, one 92^3 tile) in float32,
  float32 + channels-last, bfloat16 autocast, bfloat16 + channels-last. Passes alternate between the modes
  (round-robin), so that load on the shared machine affects them alike. Without native bfloat16 the
  bfloat16 passes run once each (they take tens of seconds).
- **Training** (forward + backward + Adam step, batch of 2 tiles 284x284 of the 2D network): iterations/s
  per mode, round-robin as above.
- **Agreement**: the largest logit difference and the share of pixels whose class differs from float32, per
  mode; and the tiled-vs-whole difference of the overlap-tile inferer under bfloat16 (reported, not
  asserted: float32 is the inferer's exactness contract).
- With a trained main-job model in outputs/accuracy/default (``benchmarks/accuracy.py --only default``): its
  validation accuracy (Dice, object F1, AP@0.5) evaluated in each mode.
- With ``--bundle``: the main job (unet2d + quickstart, the README's first command) trained twice, in float32
  and with bfloat16 autocast (``--amp``): wall time, iterations/s and the validation metrics of each; the
  decision whether the bundles train in bfloat16 by default rests on it.

Whether the CPU computes bfloat16 natively (oneDNN's check) is recorded: without AVX512-BF16/AMX, PyTorch
emulates it and bfloat16 is much slower than float32.

Usage: ``python benchmarks/precision.py [--repeats N] [--bundle]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medunet.inference import OverlapTileInferer, cpu_has_native_bf16, to_channels_last
from medunet.networks import ValidUNet

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MODES = [("fp32", False, False), ("fp32+cl", False, True), ("bf16", True, False), ("bf16+cl", True, True)]


def _network(dims: int, features: tuple[int, ...], channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = ValidUNet(dims, 1, 2, features=features)
    return to_channels_last(net) if channels_last else net


def _round_robin(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each mode, the modes interleaved; one warm-up call each. Without native
    bfloat16 the bfloat16 modes run once, without warm-up (each call takes tens of seconds there)."""
    once = set() if cpu_has_native_bf16() else {name for name in calls if name.startswith("bf16")}
    for name, call in calls.items():
        if name not in once:
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeats):
        for name, call in calls.items():
            if name in once and i > 0:
                continue
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def inference_speed(dims: int, features: tuple[int, ...], tile: int, repeats: int) -> dict[str, Any]:
    x = torch.randn(1, 1, *([tile] * dims))
    nets = {name: _network(dims, features, cl).eval() for name, _, cl in MODES}
    outputs: dict[str, torch.Tensor] = {}

    def call(name: str, amp: bool, cl: bool) -> Callable[[], Any]:
        def run() -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                outputs[name] = nets[name](to_channels_last(x) if cl else x).float()

        return run

    seconds = _round_robin({name: call(name, amp, cl) for name, amp, cl in MODES}, repeats)
    reference = outputs["fp32"]
    voxels = reference[0, 0].numel()
    result: dict[str, Any] = {"network": f"{dims}D features {features[0]}-{features[-1]}", "input_tile": [tile] * dims}
    for name, _, _ in MODES:
        diff = (outputs[name] - reference).abs().max().item()
        flipped = (outputs[name].argmax(1) != reference.argmax(1)).float().mean().item()
        result[name] = {
            "seconds": round(seconds[name], 4),
            "voxels_per_second": round(voxels / seconds[name]),
            "speedup_vs_fp32": round(seconds["fp32"] / seconds[name], 3),
            "max_abs_logit_diff_vs_fp32": diff,
            "class_changed_fraction_vs_fp32": flipped,
        }
    return result


def training_speed(repeats: int) -> dict[str, Any]:
    features = (32, 64, 128, 256, 512)
    x = torch.randn(2, 1, 284, 284)
    target = torch.randint(0, 2, (2, 100, 100))
    setups = {}
    for name, amp, cl in MODES:
        net = _network(2, features, cl).train()
        setups[name] = (net, torch.optim.Adam(net.parameters(), 1e-4), amp, cl)

    def call(name: str) -> Callable[[], Any]:
        net, opt, amp, cl = setups[name]

        def step() -> None:
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                out = net(to_channels_last(x) if cl else x).float()
            torch.nn.functional.cross_entropy(out, target).backward()
            opt.step()

        return step

    seconds = _round_robin({name: call(name) for name, _, _ in MODES}, repeats)
    return {
        "network": "2D features 32-512, batch 2 x 284x284 tiles, Adam",
        **{
            name: {
                "seconds_per_iteration": round(s, 4),
                "iterations_per_second": round(1 / s, 4),
                "speedup_vs_fp32": round(seconds["fp32"] / s, 3),
            }
            for name, s in seconds.items()
        },
    }


def tiled_vs_whole_bf16() -> dict[str, Any]:
    net = _network(2, (16, 32, 64, 128, 256), False).eval()
    x = torch.randn(1, 1, 300, 300)
    report = {}
    for amp in (False, True):
        precision = "bfloat16" if amp else "float32"
        if amp and not cpu_has_native_bf16():
            report["bf16"] = {"refused": "no native bfloat16 on this CPU (the bfloat16 preset is refused here)"}
            continue
        tiled = OverlapTileInferer(input_tile=(284, 284), precision=precision)(x, net)
        whole = OverlapTileInferer(input_tile=(-1, -1), precision=precision)(x, net)
        scale = whole.abs().max().item()
        report["bf16" if amp else "fp32"] = {
            "max_abs_diff": (tiled - whole).abs().max().item(),
            "relative_to_largest_logit": (tiled - whole).abs().max().item() / scale,
        }
    return {"image": [300, 300], "tile": [284, 284], "network": "2D features 16-256", **report}


def trained_accuracy(run_dir: Path) -> dict[str, Any]:
    """A trained main-job model evaluated on its validation images in each mode (the evaluation command's code)."""
    from medunet.apps.evaluation import evaluate_folder

    images, labels = run_dir.parent / "default_test" / "images", run_dir.parent / "default_test" / "labels"
    features = json.loads((REPO / "configs" / "quickstart.json").read_text())["features"]
    report: dict[str, Any] = {
        "checkpoint": str(run_dir / "best_model.pt"),
        "images": sorted(p.name for p in images.iterdir()),
    }
    for name, amp, cl in MODES:
        start = time.perf_counter()
        result = evaluate_folder(
            "bundles/unet2d", run_dir / "best_model.pt", images, labels, Path(tempfile.mkdtemp()), "instances",
            overrides={"features": features, "device": "cpu", "amp": amp, "channels_last": cl},
        )  # fmt: skip
        report[name] = {k: round(result["mean"][k], 4) for k in ("dice", "f1", "ap@0.50", "merged", "rand_error")}
        report[name]["seconds"] = round(time.perf_counter() - start, 1)
    return report


def bundle_runs() -> dict[str, Any]:
    """The main job's training (unet2d + quickstart, channels-last off as the bundles train) in float32 and with
    bfloat16 autocast (``--amp``), one after the other in fresh output folders with the same seed: training
    iterations/s and the validation metrics at the end of each."""
    runs = {}
    for name, amp in (("fp32", False), ("bf16", True)):
        out = Path(tempfile.mkdtemp(prefix=f"medunet-precision-{name}-"))
        cmd = [
            sys.executable, "-m", "monai.bundle", "run", "training",
            "--config_file", "['bundles/unet2d/configs/train.json','configs/quickstart.json']",
            "--output_dir", str(out), "--channels_last", "False", "--amp", str(amp),
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        log = proc.stdout + proc.stderr
        metrics = {k: float(v) for k, v in re.findall(r"(val_[a-z0-9_]+): ([0-9.]+)", log)}
        iterations = len(re.findall(r"Iter: \d+/\d+ -- train_loss", log))
        trainer_seconds = [
            int(h) * 3600 + int(m) * 60 + float(s)
            for h, m, s in re.findall(
                r"SupervisedTrainer - INFO - Epoch\[\d+\] Complete\. Time taken: (\d+):(\d+):([\d.]+)", log
            )
        ]
        runs[name] = {
            "wall_seconds": round(wall, 1),
            "iterations": iterations,
            "training_seconds": round(sum(trainer_seconds), 1),
            "iterations_per_second": round(iterations / sum(trainer_seconds), 4) if trainer_seconds else None,
            "last_validation": metrics,
        }
    runs["bf16_speedup"] = round(runs["fp32"]["training_seconds"] / runs["bf16"]["training_seconds"], 3)
    return {
        "command": "python -m monai.bundle run training (unet2d + configs/quickstart.json) --channels_last False "
        "--amp {False,True}",
        **runs,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        "# bfloat16 and channels-last on the CPU",
        "",
        f"Machine: {result['machine']}; native bfloat16: **{result['cpu_native_bf16']}**; torch {result['torch']}, "
        f"{result['threads']} threads. Command: `{result['command']}`. Medians of {result['repeats']} round-robin passes.",
        *([result["load_note"], ""] if result.get("load_note") else []),
        "",
        "| case | mode | seconds | throughput | speed-up vs fp32 | max logit diff vs fp32 | class changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("inference_2d", "inference_3d"):
        case = result[key]
        for name, _, _ in MODES:
            m = case[name]
            lines.append(
                f"| {case['network']}, tile {'x'.join(map(str, case['input_tile']))} | {name} | {m['seconds']} | "
                f"{m['voxels_per_second']:,} voxels/s | {m['speedup_vs_fp32']}x | {m['max_abs_logit_diff_vs_fp32']:.2e} | "
                f"{m['class_changed_fraction_vs_fp32']:.2e} |"
            )
    t = result["training"]
    for name, _, _ in MODES:
        m = t[name]
        lines.append(
            f"| training: {t['network']} | {name} | {m['seconds_per_iteration']} | {m['iterations_per_second']} it/s | "
            f"{m['speedup_vs_fp32']}x | | |"
        )
    tw = result["tiled_vs_whole"]
    lines += [
        "",
        f"Overlap-tile inferer, tiled vs whole-image pass ({tw['network']}, image {tw['image']}, tile {tw['tile']}): "
        f"fp32 max difference {tw['fp32']['max_abs_diff']:.2e} ({tw['fp32']['relative_to_largest_logit']:.1e} of the "
        + (
            f"largest logit), bf16 {tw['bf16']['max_abs_diff']:.2e} ({tw['bf16']['relative_to_largest_logit']:.1e}). "
            if "refused" not in tw["bf16"]
            else f"largest logit); bf16: {tw['bf16']['refused']}. "
        )
        + "Reported, not asserted: float32 is the inferer's exactness contract.",
    ]
    if "trained_accuracy" in result:
        t = result["trained_accuracy"]
        lines += ["", "## Accuracy of a trained model per mode", "",
                  f"The main job's model (`{t['checkpoint']}`, from `benchmarks/accuracy.py`) on its validation images "
                  f"{', '.join(t['images'])}, through the bundle's inference pipeline with `amp` / `channels_last` set:", "",
                  "| mode | Dice | object F1 | AP@0.5 | merged | Rand error | seconds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, _, _ in MODES:
            m = t[name]
            lines.append(
                f"| {name} | {m['dice']} | {m['f1']} | {m['ap@0.50']} | {m['merged']} | {m['rand_error']} | {m['seconds']} |"
            )
    if "bundle" in result:
        b = result["bundle"]
        lines += ["", "## Training the main job in float32 and in bfloat16", "", f"`{b['command']}`", "",
                  "| precision | wall s | training s | it/s | last validation |", "|---|---|---|---|---|"]  # fmt: skip
        for name in ("fp32", "bf16"):
            r = b[name]
            shown = ", ".join(f"{k} {v:.3f}" for k, v in r["last_validation"].items())
            lines.append(
                f"| {name} | {r['wall_seconds']} | {r['training_seconds']} | {r['iterations_per_second']} | {shown} |"
            )
        lines += ["", f"bfloat16 training: {b['bf16_speedup']}x the float32 speed (training seconds)."]
    lines += ["", conclusion(result), ""]
    return "\n".join(lines)


def conclusion(result: dict[str, Any]) -> str:
    """The defaults these numbers support."""
    cl2 = result["inference_2d"]["fp32+cl"]["speedup_vs_fp32"]
    cl3 = result["inference_3d"]["fp32+cl"]["speedup_vs_fp32"]
    clt = result["training"]["fp32+cl"]["speedup_vs_fp32"]
    bf = result["inference_2d"]["bf16"]["speedup_vs_fp32"]
    text = (
        f"Defaults drawn from these numbers: channels-last on for inference ({cl2}x in 2D, {cl3}x in 3D, in float32, "
        f"the same classes up to float rounding) and off for training ({clt}x: no gain); inference stays float32 by "
        f"default (the overlap-tile inferer's exactness contract; bfloat16 inference here {bf}x). "
    )
    if "bundle" not in result:
        return text + "Training in bfloat16: not measured in this run (`--bundle`)."
    b = result["bundle"]
    fp32, bf16 = b["fp32"]["last_validation"], b["bf16"]["last_validation"]
    dice_change = bf16.get("val_mean_dice", 0.0) - fp32.get("val_mean_dice", 0.0)
    ok = result["cpu_native_bf16"] and b["bf16_speedup"] > 1.1 and dice_change > -0.01
    return text + (
        f"Training in bfloat16 (`amp`): {b['bf16_speedup']}x the float32 speed, validation Dice {dice_change:+.4f} "
        f"against float32; native bfloat16: {result['cpu_native_bf16']}. "
        + (
            "So the bundles train with bfloat16 autocast by default on CPUs with native bfloat16 "
            "(`medunet.engines.amp_default(device, training=True)`), and in float32 on the others."
            if ok
            else "Not faster with the same accuracy here: training stays float32 on this CPU."
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bundle", action="store_true", help="also train the main job in float32 and in bfloat16")
    parser.add_argument("--render", action="store_true", help="rewrite precision.md from precision.json")
    args = parser.parse_args()
    if args.render:
        result = json.loads((RESULTS / "precision.json").read_text())
        (RESULTS / "precision.md").write_text(render(result))
        return
    torch.set_num_threads(2)
    native = cpu_has_native_bf16()
    result: dict[str, Any] = {
        "command": "python benchmarks/precision.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "cpu_native_bf16": native,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }
    result["inference_2d"] = inference_speed(2, (32, 64, 128, 256, 512), 572, args.repeats)
    print(json.dumps(result["inference_2d"], indent=1), flush=True)
    result["inference_3d"] = inference_speed(3, (32, 64, 128, 256), 92, args.repeats)
    print(json.dumps(result["inference_3d"], indent=1), flush=True)
    result["training"] = training_speed(args.repeats)
    print(json.dumps(result["training"], indent=1), flush=True)
    result["tiled_vs_whole"] = tiled_vs_whole_bf16()
    trained = REPO / "outputs" / "accuracy" / "default"
    if (trained / "best_model.pt").is_file() and (trained.parent / "default_test").is_dir():
        result["trained_accuracy"] = trained_accuracy(trained)
    if args.bundle:
        result["bundle"] = bundle_runs()
    result["conclusion"] = conclusion(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "precision.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "precision.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
