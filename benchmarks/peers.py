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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PEERS_VENV = REPO / ".venv-peers"
PEER_PACKAGES = ["stardist==0.9.2", "tensorflow>=2.16,<3", "tifffile", "pillow"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipped_models import cpu_name, score, segment_cases, summarise, table  # noqa: E402


def peers_python() -> Path:
    """The peers' interpreter, the environment created on first use."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


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
    ours, our_seconds, _ = segment_cases(args.model, validation, work / "medunet")
    methods = {"medunet": score(ours, validation), "stardist": score(stardist, validation)}
    summary = {name: summarise(per_image, groups) for name, per_image in methods.items()}
    ratio = summary["medunet"]["all"]["ap@0.50"] / max(summary["stardist"]["all"]["ap@0.50"], 1e-9)
    result = {
        "command": "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(), "cpu": cpu_name()},
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
    ]
    lines += table({}, "method")  # the header
    for group in result["summary"]["medunet"]:
        for method in ("medunet", "stardist"):
            lines += table({group: result["summary"][method][group]}, method)[2:]
    lines += ["", f"AP@0.5 ratio medunet / StarDist (all images): {result['ap50_ratio_medunet_over_stardist']:.3f}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
