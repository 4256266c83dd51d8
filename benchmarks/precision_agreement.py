"""How far the fast inference presets (bfloat16, float16) move the shipped 2D models' results from float32:
writes ``benchmarks/results/precision_agreement[_cuda].{json,md}``.

For ``nuclei`` (DSB 2018 stage 1 validation images) and ``em_membranes`` (ISBI 2012 slices 20-24), each image is
segmented with the bundle's own tile, test-time flips and instance settings in every preset the device runs
(CUDA: float32, bfloat16, float16; a CPU: float32, and bfloat16 where it is native). Reported per preset against
float32: the fraction of pixels whose class changes, the largest probability difference, and the instance
metrics (:func:`medunet.metrics.instance_scores` against the true instances: AP at IoU 0.5, F1, PQ) of both.

Two steps, so that the measuring machine needs only torch, MONAI and medunet's core: ``--pack DIR`` (here, with
the data sets in ../shared/data) writes the preprocessed images and true instances of the chosen cases to
``DIR/cases.npz`` through each bundle's own preprocessing; ``--cases DIR --device cuda`` measures.

Usage: ``python benchmarks/precision_agreement.py --pack DIR [--nuclei 20]`` then
``python benchmarks/precision_agreement.py --cases DIR [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODELS = ("nuclei", "em_membranes")


def settings(model: str) -> dict[str, Any]:
    """The bundle's plain settings (network, tile, flips, instance post-processing) from its inference.json."""
    config = json.loads((REPO / "bundles" / model / "configs" / "inference.json").read_text())
    return {k: v for k, v in config.items() if not isinstance(v, str) or not v.startswith(("$", "@"))}


def pack(folder: Path, nuclei: int) -> None:
    """Writes the preprocessed images (float32, channel-first, as the bundle's network sees them) and the true
    instances of the cases to ``folder/cases.npz``."""
    from monai.bundle import ConfigParser
    from PIL import Image

    from medunet.data.datasets import dsb2018_stage1, isbi2012_em
    from medunet.utils.labels import label_components

    arrays: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    sources = {
        "nuclei": dsb2018_stage1()["validation"][:nuclei],
        "em_membranes": [c for c in isbi2012_em()["validation"]],
    }
    for model, cases in sources.items():
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / model / "configs" / "inference.json"))
        preprocessing = parser.get_parsed_content("preprocessing")
        names[model] = []
        for i, case in enumerate(cases):
            image = preprocessing({"image": case["image"]})["image"]
            # MONAI's image reader puts the first axis along the image's width; the label follows it
            truth = np.asarray(Image.open(case["label"])).astype(np.int64).T
            if model == "em_membranes":  # the true cells (255) as connected regions, as shipped_models scores them
                truth = label_components(truth > 0)
            arrays[f"{model}/{i}/image"] = np.asarray(image, dtype=np.float32)
            arrays[f"{model}/{i}/truth"] = truth.astype(np.int32)
            names[model].append(Path(case["image"]).name)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "cases.npz", **arrays)
    (folder / "cases.json").write_text(json.dumps(names, indent=2) + "\n")
    print(f"packed {sum(len(v) for v in names.values())} cases into {folder / 'cases.npz'}")


def presets(device: torch.device) -> list[str]:
    from medunet.inference import cpu_has_native_bf16

    if device.type == "cuda":
        return ["float32", "bfloat16", "float16"]
    return ["float32", "bfloat16"] if cpu_has_native_bf16() else ["float32"]


def measure(folder: Path, device: torch.device) -> dict[str, Any]:
    from medunet.export import INSTANCE_SETTINGS
    from medunet.inference import OverlapTileInferer, to_channels_last
    from medunet.metrics import instance_scores
    from medunet.networks import ValidUNet, load_weights
    from medunet.transforms.functional.instances import instances_from_prediction

    data = np.load(folder / "cases.npz")
    names = json.loads((folder / "cases.json").read_text())
    out: dict[str, Any] = {}
    for model in MODELS:
        s = settings(model)
        net = ValidUNet(s["spatial_dims"], s["in_channels"], s["num_classes"], features=s["features"],
                        dropout=s["dropout"], norm=s["norm"], pool_sizes=s["pool_sizes"])  # fmt: skip
        net = to_channels_last(load_weights(net, REPO / "bundles" / model / "models" / "model.pt").eval().to(device))
        instance = {k: s[f"instance_{k}"] for k in INSTANCE_SETTINGS if f"instance_{k}" in s}
        rows: dict[str, dict[str, list[float]]] = {p: {} for p in presets(device)}
        seconds: dict[str, float] = dict.fromkeys(rows, 0.0)
        for i, _ in enumerate(names[model]):
            image = torch.from_numpy(data[f"{model}/{i}/image"])[None].to(device)
            truth = data[f"{model}/{i}/truth"]
            reference: np.ndarray | None = None
            for precision in rows:
                inferer = OverlapTileInferer(output_tile=s["output_tile"], flip_axes=s["flip_axes"],
                                             output="probabilities", precision=precision, channels_last=True)  # fmt: skip
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                probabilities = inferer(image, net)[0].float().cpu().numpy()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds[precision] += time.perf_counter() - start
                labels = instances_from_prediction(probabilities, **instance)
                scores = instance_scores(labels, truth)
                row = rows[precision]
                for key in ("ap@0.50", "f1", "pq"):
                    row.setdefault(key, []).append(float(scores[key]))
                if reference is None:
                    reference = probabilities
                    continue
                changed = np.mean(probabilities.argmax(0) != reference.argmax(0))
                row.setdefault("class_changed", []).append(float(changed))
                row.setdefault("max_probability_diff", []).append(float(np.abs(probabilities - reference).max()))
        out[model] = {
            "images": len(names[model]),
            "presets": {
                p: {
                    **{k: float(np.max(v) if k == "max_probability_diff" else np.mean(v)) for k, v in row.items()},
                    "seconds": round(seconds[p], 3),
                }
                for p, row in rows.items()
            },
        }
        print(model, json.dumps(out[model]), flush=True)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Inference presets against float32 ({results['device_name']})",
        "",
        f"Command: `{results['command']}`; torch {results['torch']}; CPU native bfloat16: {results['cpu_native_bf16']}."
        " Each image through the bundle's tile, flips and instance settings in every preset; class changed: fraction "
        "of pixels whose argmax differs from float32's (mean over images); probability: largest absolute difference "
        "over all images; AP@0.5, F1, PQ: medunet's instance metrics against the true instances (mean over images).",
        "",
        "| model (images) | preset | class changed | max probability diff | AP@0.5 | F1 | PQ | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, r in results["models"].items():
        for preset, m in r["presets"].items():
            changed = m.get("class_changed")
            diff = m.get("max_probability_diff")
            lines.append(
                f"| {model} ({r['images']}) | {preset} | "
                + ("reference" if changed is None else f"{changed:.2e}")
                + " | "
                + ("" if diff is None else f"{diff:.3f}")
                + f" | {m['ap@0.50']:.4f} | {m['f1']:.4f} | {m['pq']:.4f} | {m['seconds']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, help="write the cases to this folder (needs ../shared/data)")
    parser.add_argument("--nuclei", type=int, default=20, help="nuclei validation images to pack (the first N)")
    parser.add_argument("--cases", type=Path, help="measure the cases packed in this folder")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.pack:
        pack(args.pack, args.nuclei)
        return
    if args.cases is None:
        parser.error("give --pack DIR or --cases DIR")
    from medunet.inference import cpu_has_native_bf16

    device = torch.device(args.device)
    results = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "command": f"python benchmarks/precision_agreement.py --cases DIR --device {args.device}",
        "models": measure(args.cases, device),
    }
    name = "precision_agreement" + ("_cuda" if device.type == "cuda" else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
