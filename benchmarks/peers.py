"""medunet's nuclei model beside StarDist and Cellpose: the same images, the same CPU budget, medunet's metrics code.

Writes benchmarks/results/peers.json and peers.md. In one run:

1. the validation split of ``dsb2018_stage1`` (:func:`medunet.data.datasets.dsb2018_stage1`, 61 images, per group);
2. each peer trained from scratch on the same 549 training images for ``--budget`` seconds on this machine, in its
   own environment created here when missing (they are no dependencies of medunet), then applied to the
   validation images: StarDist 2D with its example configuration (``.venv-peers``, ``benchmarks/peers_stardist.py``)
   and Cellpose 3's CNN with its own training defaults (``.venv-cellpose``, ``benchmarks/peers_cellpose.py``);
3. medunet's model (the shipped ``nuclei`` bundle by default, trained by its documented command for a stated CPU
   budget on the same kind of machine) applied to the same images with ``medunet segment``'s code path;
4. all scored by :func:`medunet.metrics.instance_scores` (AP at IoU 0.5-0.9 as TP / (TP + FP + FN), F1, PQ,
   merged and split nuclei), per image, then averaged per group and overall.

Each peer's predictions and record stay in ``outputs/peers/<peer>/``. A peer's training takes the whole budget of
the 2 cores, so the peers can be trained in separate invocations: ``--reuse stardist`` scores the predictions an
earlier invocation left there instead of training StarDist again (the record says when it ran).

Usage: ``python benchmarks/peers.py [--budget SECONDS] [--model nuclei|BUNDLE] [--peers stardist cellpose]
[--reuse PEER ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "outputs" / "peers"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipped_models import cpu_name, score, segment_cases, summarise, table  # noqa: E402

from medunet.inference.precision import cpu_has_native_bf16  # noqa: E402


@dataclass(frozen=True)
class Peer:
    """A peer method: its environment, the packages installed there, and the script that trains and applies it."""

    venv: str
    packages: tuple[str, ...]
    script: str

    def python(self) -> Path:
        """The peer's interpreter, its environment created on first use."""
        python = REPO / self.venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(REPO / self.venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", *self.packages], check=True)
        return python


PEERS = {
    "stardist": Peer(
        ".venv-peers", ("stardist==0.9.2", "tensorflow>=2.16,<3", "tifffile", "pillow"), "peers_stardist.py"
    ),
    # torch pinned to the CPU build medunet's environment uses; cellpose 3 is the version with the CNN
    "cellpose": Peer(".venv-cellpose", ("torch==2.13.0", "cellpose==3.1.1.3", "pillow"), "peers_cellpose.py"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=5040.0, help="each peer's training budget in seconds")
    parser.add_argument("--model", default="nuclei", help="medunet's model: a shipped name or a bundle folder")
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS))
    parser.add_argument("--reuse", nargs="*", choices=list(PEERS), default=[],
                        help="score these peers' predictions from an earlier invocation (outputs/peers/PEER)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="peers",
                        help="results name: benchmarks/results/NAME.{json,md} (another name keeps earlier results)")  # fmt: skip
    args = parser.parse_args()

    from medunet.data.datasets import dsb2018_stage1

    datalist = dsb2018_stage1()
    validation = datalist["validation"]
    groups = {Path(c["image"]).name.rsplit(".", 1)[0]: c["group"] for c in validation}
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "datalist.json").write_text(json.dumps(datalist))
    runs = {}
    for peer in args.peers:
        folder = WORK / peer
        if peer not in args.reuse:
            started = time.strftime("%Y-%m-%d %H:%M")
            subprocess.run(
                [str(PEERS[peer].python()), str(REPO / "benchmarks" / PEERS[peer].script), str(WORK / "datalist.json"),
                 str(folder), "--seconds", str(args.budget), "--seed", str(args.seed)],
                check=True,
            )  # fmt: skip
            record = json.loads((folder / f"{peer}.json").read_text())
            record["started"] = started
            (folder / f"{peer}.json").write_text(json.dumps(record, indent=2))
        runs[peer] = json.loads((folder / f"{peer}.json").read_text())
    ours, our_seconds, _ = segment_cases(args.model, validation, WORK / "medunet")
    methods = {"medunet": score(ours, validation)}
    for peer in args.peers:
        methods[peer] = score({name: WORK / peer / f"{name}_instances.png" for name in groups}, validation)
    summary = {name: summarise(per_image, groups) for name, per_image in methods.items()}
    ratios = {
        peer: summary["medunet"]["all"]["ap@0.50"] / max(summary[peer]["all"]["ap@0.50"], 1e-9) for peer in args.peers
    }
    result = {
        "command": "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
        "machine": {
            "arch": platform.machine(),
            "cores": os.cpu_count(),
            "cpu": cpu_name(),
            "native_bfloat16": cpu_has_native_bf16(),
        },
        "data": {
            "dataset": "dsb2018_stage1",
            "split": datalist["split"],
            "training": len(datalist["training"]),
            "validation": len(validation),
        },
        "medunet_model": args.model,
        "medunet_predict_seconds": round(our_seconds, 2),
        "peer_runs": runs,
        "summary": summary,
        "ap50_ratio_medunet_over": ratios,
        "per_image": methods,
        "groups": groups,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.results}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{args.results}.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    runs = result["peer_runs"]
    lines = [
        "# Nuclei: medunet beside its peers",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores"
        f"{_bf16(result['machine'])}.",
        f"Data: {result['data']['dataset']}, {result['data']['training']} training and "
        f"{result['data']['validation']} validation images ({result['data']['split']}).",
        f"medunet: `{result['medunet_model']}` (see its model card for its training budget); segmenting the validation "
        f"images took {result['medunet_predict_seconds']} s.",
    ]
    if "stardist" in runs:
        run = runs["stardist"]
        lines.append(
            f"StarDist 2D (tensorflow {run['tensorflow']}, started {run.get('started', '?')}): trained from scratch for "
            f"{run['train_seconds']} s ({run['steps']} steps of batch {run['stardist_config']['batch_size']}, patch "
            f"{run['stardist_config']['patch']}) on {run['train_images']} images, thresholds optimised on "
            f"{run['threshold_images']} held-out training images; prediction {run['predict_seconds']} s."
        )
    if "cellpose" in runs:
        run = runs["cellpose"]
        lines.append(
            f"Cellpose {run['cellpose']} CNN (torch {run['torch']}, started {run.get('started', '?')}): trained from "
            f"scratch for {run['train_seconds']} s (flows included; {run['steps']} steps of batch "
            f"{run['config']['batch_size']}, {run['config']['bsize']} px crops) on {run['train_images']} images; "
            f"prediction {run['predict_seconds']} s."
        )
    lines += [
        "",
        "Scores by medunet.metrics.instance_scores, mean (± standard deviation) over the images of each group; AP is "
        "TP / (TP + FP + FN) at the IoU threshold (the DSB 2018 metric).",
        "",
    ]
    lines += table({}, "method")  # the header
    for group in result["summary"]["medunet"]:
        for method in result["summary"]:
            lines += table({group: result["summary"][method][group]}, method)[2:]
    lines.append("")
    for peer, ratio in result["ap50_ratio_medunet_over"].items():
        lines.append(f"AP@0.5 ratio medunet / {peer} (all images): {ratio:.3f}")
    lines.append("")
    return "\n".join(lines)


def _bf16(machine: dict) -> str:
    if "native_bfloat16" not in machine:
        return ""
    return ", native bfloat16" if machine["native_bfloat16"] else ", no native bfloat16 (AVX2)"


if __name__ == "__main__":
    main()
