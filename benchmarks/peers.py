"""medunet's nuclei model beside StarDist: the same images, the same CPU budget, medunet's metrics code.

Writes benchmarks/results/peers.json and peers.md. In one run:

1. the validation split of ``dsb2018_stage1`` (:func:`medunet.data.datasets.dsb2018_stage1`, 61 images, per group);
2. StarDist 2D (its example configuration) trained from scratch on the same 549 training images for ``--budget``
   seconds on this machine, in its own environment ``.venv-peers`` (created here when missing: stardist and
   tensorflow are no dependencies of medunet), then applied to the validation images
   (``benchmarks/peers_stardist.py``);
3. medunet's model (the shipped ``nuclei`` bundle by default, trained by its documented command for a stated CPU
   budget on the same kind of machine) applied to the same images with ``medunet segment``'s code path;
4. both scored by :func:`medunet.metrics.instance_scores` (AP at IoU 0.5-0.9 as TP / (TP + FP + FN), F1, PQ,
   merged and split nuclei), per image, then averaged per group and overall.

Usage: ``python benchmarks/peers.py [--budget SECONDS] [--model nuclei|BUNDLE] [--skip-stardist DIR]``
(``--skip-stardist DIR`` scores StarDist predictions already written to DIR by an earlier run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PEERS_VENV = REPO / ".venv-peers"
PEER_PACKAGES = ["stardist==0.9.2", "tensorflow>=2.16,<3", "tifffile", "pillow"]
METRICS = ["ap@0.50", "ap@0.75", "ap@0.90", "ap_mean", "f1", "pq", "merged", "split"]


def peers_python() -> Path:
    """The peers' interpreter, the environment created on first use."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


def score(predictions: dict[str, Path], cases: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per image: medunet's instance metrics of the prediction against the label."""
    from medunet.metrics import instance_scores

    per_image = {}
    for case in cases:
        name = Path(case["image"]).name.rsplit(".", 1)[0]
        truth = np.asarray(Image.open(case["label"])).astype(np.int64)
        pred = np.asarray(Image.open(predictions[name])).astype(np.int64)
        per_image[name] = {k: float(v) for k, v in instance_scores(pred, truth).items()}
    return per_image


def summarise(per_image: dict[str, dict[str, float]], groups: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean (and standard deviation over images) of each metric, per group and overall."""
    out: dict[str, dict[str, float]] = {}
    for group in [*sorted(set(groups.values())), "all"]:
        names = [n for n in per_image if group == "all" or groups[n] == group]
        row: dict[str, float] = {"images": len(names)}
        for metric in METRICS:
            values = np.array([per_image[n][metric] for n in names])
            row[metric], row[f"{metric}_std"] = float(values.mean()), float(values.std())
        out[group] = row
    return out


def medunet_predictions(model: str, cases: list[dict[str, str]], folder: Path) -> tuple[dict[str, Path], float]:
    from medunet.apps.segment import segment

    images = folder / "images"
    images.mkdir(parents=True)
    for case in cases:
        os.symlink(case["image"], images / Path(case["image"]).name)
    start = time.perf_counter()
    segment(model, images, folder / "out", settings={"device": "cpu"}, progress=False)
    seconds = time.perf_counter() - start
    return {Path(c["image"]).name.rsplit(".", 1)[0]: folder / "out" / f"{Path(c['image']).stem}_instances.png"
            for c in cases}, seconds  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=6000.0, help="StarDist's training budget in seconds")
    parser.add_argument("--model", default="nuclei", help="medunet's model: a shipped name or a bundle folder")
    parser.add_argument("--skip-stardist", help="a folder of StarDist predictions from an earlier run of this script")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from medunet.data.datasets import dsb2018_stage1

    datalist = dsb2018_stage1()
    validation = datalist["validation"]
    groups = {Path(c["image"]).name.rsplit(".", 1)[0]: c["group"] for c in validation}
    work = Path(tempfile.mkdtemp(prefix="medunet-peers-"))
    (work / "datalist.json").write_text(json.dumps(datalist))
    if args.skip_stardist:
        stardist_dir = Path(args.skip_stardist)
    else:
        stardist_dir = work / "stardist"
        subprocess.run(
            [str(peers_python()), str(REPO / "benchmarks" / "peers_stardist.py"), str(work / "datalist.json"),
             str(stardist_dir), "--seconds", str(args.budget), "--seed", str(args.seed)],
            check=True,
        )  # fmt: skip
    stardist_run = json.loads((stardist_dir / "stardist.json").read_text())
    stardist = {name: stardist_dir / f"{name}_instances.png" for name in groups}
    ours, our_seconds = medunet_predictions(args.model, validation, work / "medunet")
    methods = {"medunet": score(ours, validation), "stardist": score(stardist, validation)}
    summary = {name: summarise(per_image, groups) for name, per_image in methods.items()}
    ratio = summary["medunet"]["all"]["ap@0.50"] / max(summary["stardist"]["all"]["ap@0.50"], 1e-9)
    result = {
        "command": "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(), "cpu": _cpu_name()},
        "data": {
            "dataset": "dsb2018_stage1",
            "split": datalist["split"],
            "training": len(datalist["training"]),
            "validation": len(validation),
        },
        "medunet_model": args.model,
        "medunet_predict_seconds": round(our_seconds, 2),
        "stardist_run": stardist_run,
        "summary": summary,
        "ap50_ratio_medunet_over_stardist": ratio,
        "per_image": methods,
        "groups": groups,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "peers.md").write_text(_markdown(result))
    print(_markdown(result))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _markdown(result: dict) -> str:
    run = result["stardist_run"]
    lines = [
        "# Nuclei: medunet beside StarDist",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores.",
        f"Data: {result['data']['dataset']}, {result['data']['training']} training and "
        f"{result['data']['validation']} validation images ({result['data']['split']}).",
        f"StarDist 2D (tensorflow {run['tensorflow']}): trained from scratch for {run['train_seconds']} s "
        f"({run['steps']} steps of batch {run['stardist_config']['batch_size']}, patch "
        f"{run['stardist_config']['patch']}) on {run['train_images']} images, thresholds optimised on "
        f"{run['threshold_images']} held-out training images. medunet: `{result['medunet_model']}` (see its model card "
        "for its training budget).",
        "",
        "Scores by medunet.metrics.instance_scores, mean (± standard deviation) over the images of each group; AP is "
        "TP / (TP + FP + FN) at the IoU threshold (the DSB 2018 metric).",
        "",
        "| group | images | method | AP@0.5 | AP@0.75 | AP@0.9 | mean AP 0.5-0.9 | F1 | PQ | merged | split |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for group, row in result["summary"]["medunet"].items():
        for method in ("medunet", "stardist"):
            r = result["summary"][method][group]
            cells = [f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if m.startswith(("ap", "f1", "pq")) else f"{r[m]:.2f}"
                     for m in METRICS]  # fmt: skip
            lines.append(f"| {group} | {row['images']} | {method} | " + " | ".join(cells) + " |")
    lines += ["", f"AP@0.5 ratio medunet / StarDist (all images): {result['ap50_ratio_medunet_over_stardist']:.3f}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
