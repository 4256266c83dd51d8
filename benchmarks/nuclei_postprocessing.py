"""How the shipped nuclei model's background / interior / border probabilities become instances: seed rules compared
on its validation split, without retraining. Writes benchmarks/results/nuclei_postprocessing.json and .md.

The network's probabilities of the 61 validation images of ``dsb2018_stage1`` are computed once (``medunet
segment``'s pre-processing and overlap-tile inferer, float32, no TTA) and kept in ``outputs/nuclei_probabilities``;
each rule then only re-runs the watershed. Rules (all grow their seeds over the predicted nucleus, ``argmax > 0``,
down the interior probability, as ``split="borders"`` does):

- ``argmax``: seeds are the components of ``argmax == interior`` (the shipped default before this study);
- ``interior > t``: seeds are the components where the interior probability exceeds ``t``;
- ``interior - border > t``: the DSB 2018 winners' form, the interior's margin over the border (``split="borders"``
  with ``seed_threshold`` t);
- and the last with seeds under a size dropped before they grow (``seed_min_size``): small seeds are mostly
  fragments of one nucleus's core.

To keep the choice honest the validation images are split in two halves (alternate images per group, sorted by
name): the rule and threshold are chosen on the first half (``tune``) and reported on the second (``check``) and on
all 61 images.

Usage: ``python benchmarks/nuclei_postprocessing.py``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "outputs" / "nuclei_probabilities"
METRICS = ["ap@0.50", "ap_mean", "f1", "merged", "split"]


def probabilities(cases: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """The shipped model's (3, H, W) probabilities per validation image, cached as float16 ``.npy``."""
    import torch

    from medunet.apps.segment import resolve_model
    from medunet.apps.segmenter import BundleSegmenter

    CACHE.mkdir(parents=True, exist_ok=True)
    out, segmenter = {}, None
    for case in cases:
        name = Path(case["image"]).stem
        path = CACHE / f"{name}.npy"
        if not path.is_file():
            if segmenter is None:
                segmenter = BundleSegmenter(*resolve_model("nuclei"), {"device": "cpu"})
            data = segmenter.preprocessing({"image": case["image"]})
            with torch.inference_mode():
                pred = segmenter.inferer(data["image"][None], segmenter.network)[0]
            # MONAI reads a PNG as (x, y): back to the (row, column) of the label image
            np.save(path, np.asarray(pred, dtype=np.float16).transpose(0, 2, 1))
        out[name] = np.load(path).astype(np.float32)
    return out


def instances(prob: np.ndarray, rule: str, threshold: float, seed_min: int = 0) -> np.ndarray:
    """Instances by one seed rule: ``argmax`` and ``margin`` are ``split="borders"`` (its ``seed_threshold`` 0 is the
    argmax's interior); ``interior`` changes only its seeds (for comparison, not in the library)."""
    from medunet.transforms.functional.instances import _grow, instances_from_prediction
    from medunet.utils.labels import label_components, remove_small

    if rule != "interior":
        return instances_from_prediction(
            prob, split="borders", min_size=8, seed_threshold=threshold, seed_min_size=seed_min
        )
    mask = np.argmax(prob, axis=0) > 0
    seeds = remove_small(label_components(mask & (prob[1] > threshold)), seed_min)
    return remove_small(_grow(-prob[1], seeds, mask), 8)


def main() -> None:
    from medunet.data.datasets import dsb2018_stage1
    from medunet.metrics import instance_scores

    cases = dsb2018_stage1()["validation"]
    probs = probabilities(cases)
    truths = {Path(c["label"]).stem: np.asarray(Image.open(c["label"])).astype(np.int64) for c in cases}
    groups = {Path(c["image"]).stem: c["group"] for c in cases}
    halves: dict[str, list[str]] = {"tune": [], "check": []}
    for group in sorted(set(groups.values())):
        names = sorted(n for n in groups if groups[n] == group)
        halves["tune"] += names[0::2]
        halves["check"] += names[1::2]

    rules = [("argmax", 0.0, 0)]
    rules += [("interior", t, 0) for t in (0.5, 0.6, 0.7, 0.8, 0.9)]
    rules += [("interior - border", t, 0) for t in (0.0, 0.2, 0.4, 0.6, 0.8)]
    rules += [("interior - border", t, m) for t in (0.5, 0.6, 0.7, 0.8) for m in (5, 10, 20, 30, 40)]
    rows = []
    for rule, threshold, seed_min in rules:
        key = "interior" if rule == "interior" else ("margin" if rule != "argmax" else "argmax")
        per_image = {n: instance_scores(instances(probs[n], key, threshold, seed_min), truths[n]) for n in probs}
        row: dict = {"rule": rule, "threshold": threshold, "seed_min_size": seed_min}
        for half, names in [*halves.items(), ("all", sorted(probs))]:
            row[half] = {m: float(np.mean([per_image[n][m] for n in names])) for m in METRICS}
            row[half]["images"] = len(names)
        row["per_group_all"] = {
            g: float(np.mean([per_image[n]["ap@0.50"] for n in probs if groups[n] == g]))
            for g in sorted(set(groups.values()))
        }
        rows.append(row)
        print(rule, threshold, seed_min, {h: round(row[h]["ap@0.50"], 4) for h in ("tune", "check", "all")}, flush=True)
    best = max(rows, key=lambda r: r["tune"]["ap@0.50"])
    result = {
        "command": "python benchmarks/nuclei_postprocessing.py",
        "machine": platform.processor() or platform.machine(),
        "weights": "bundles/nuclei/models/model.pt",
        "halves": {h: len(v) for h, v in halves.items()},
        "rows": rows,
        "chosen_on_tune": {k: best[k] for k in ("rule", "threshold", "seed_min_size")},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nuclei_postprocessing.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Nuclei: seed rules for the shipped model's instances (no retraining)",
        "",
        f"`{result['command']}`: the shipped `nuclei` weights' probabilities on the 61 validation images of "
        "`dsb2018_stage1` (float32, no TTA), each seed rule's instances scored with `medunet.metrics.instance_scores`. "
        f"Chosen on the `tune` half ({result['halves']['tune']} images, alternate images per group), reported on the "
        f"`check` half ({result['halves']['check']} images) and on all.",
        "",
        "| seeds | threshold | seeds under px dropped | AP@0.5 tune | AP@0.5 check | AP@0.5 all | mean AP all | F1 all | merged/img all | split/img all |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["all"]
        lines.append(
            f"| {r['rule']} | {r['threshold']:g} | {r['seed_min_size']} | {r['tune']['ap@0.50']:.3f} | {r['check']['ap@0.50']:.3f} | "
            f"{a['ap@0.50']:.3f} | {a['ap_mean']:.3f} | {a['f1']:.3f} | {a['merged']:.2f} | {a['split']:.2f} |"
        )
    lines += [
        "",
        f"Chosen on the tune half: seeds `{best['rule']}` > {best['threshold']:g}, seeds under "
        f"{best['seed_min_size']} px dropped.",
    ]
    (RESULTS / "nuclei_postprocessing.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
