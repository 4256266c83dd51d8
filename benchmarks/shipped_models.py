"""The shipped models' accuracy on their validation splits: writes benchmarks/results/shipped_models.json and .md.

- ``nuclei``: the 61 validation images of ``dsb2018_stage1`` (per-group split, :func:`medunet.data.datasets.
  dsb2018_stage1`), segmented by ``medunet segment``'s code path; instance metrics of
  :func:`medunet.metrics.instance_scores` (AP at IoU 0.5-0.9 as TP / (TP + FP + FN), F1, PQ, merged, split) per
  image, then mean and standard deviation per group and overall; seconds per megapixel.
- ``em_membranes``: ISBI 2012 slices 20-24 (the model trained on 00-19), segmented the same way; the challenge's
  V_Rand and V_Info (thinned, :mod:`medunet.metrics.isbi`) of the instance output (the cells, which partition the
  image) against the connected components of the true cells, per slice, and the challenge's scores of the class
  map (cell vs membrane).
- ``brain_tumour_mr``: the 5 studies of ``tcia_pgbm_tumor``, each a study folder through ``medunet segment``
  (SEG, RTSTRUCT, SR and NIfTI written); Dice and HD95 of the NIfTI label (T1post grid) against the MaskTumor series.
  The model was trained on all 5 (no study is left): these are training-data scores, a check that the weights
  fit; the patient-wise cross-validation of the recipe is ``benchmarks/tumour3d.py``.

Usage: ``python benchmarks/shipped_models.py [--only nuclei em_membranes brain_tumour_mr] [--pictures]``; ``--pictures`` writes
the best and the worst image of each group (with the reference and predicted outlines) into the bundle's
``docs/``. A run of one model keeps the other's earlier section of the results. The model cards quote these
numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METRICS = ["ap@0.50", "ap@0.75", "ap@0.90", "ap_mean", "f1", "pq", "merged", "split"]


def score(predictions: dict[str, Path], cases: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per image: medunet's instance metrics of the predicted instance image against the label."""
    from medunet.metrics import instance_scores

    per_image = {}
    for case in cases:
        name = Path(case["image"]).name.rsplit(".", 1)[0]
        truth = np.asarray(Image.open(case["label"])).astype(np.int64)
        pred = np.asarray(Image.open(predictions[name])).astype(np.int64)
        per_image[name] = {k: float(v) for k, v in instance_scores(pred, truth).items()}
    return per_image


def summarise(per_image: dict[str, dict[str, float]], groups: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over the images of each metric, per group and over all images."""
    out: dict[str, dict[str, float]] = {}
    for group in [*sorted(set(groups.values())), "all"]:
        names = [n for n in per_image if group == "all" or groups[n] == group]
        row: dict[str, float] = {"images": len(names)}
        for metric in METRICS:
            values = np.array([per_image[n][metric] for n in names])
            row[metric], row[f"{metric}_std"] = float(values.mean()), float(values.std())
        out[group] = row
    return out


def segment_cases(model: str, cases: list[dict[str, str]], folder: Path) -> tuple[dict[str, Path], float, float]:
    """The cases' instance images by ``medunet segment``'s code path; with its seconds and megapixels. An earlier
    run's ``folder`` is replaced (a rerun segments again)."""
    import shutil

    from medunet.apps.segment import segment

    if folder.exists():
        shutil.rmtree(folder)
    images = folder / "images"
    images.mkdir(parents=True)
    for case in cases:
        os.symlink(case["image"], images / Path(case["image"]).name)
    start = time.perf_counter()
    report = segment(model, images, folder / "out", settings={"device": "cpu"}, progress=False)
    seconds = time.perf_counter() - start
    names = [Path(c["image"]).name.rsplit(".", 1)[0] for c in cases]
    return {n: folder / "out" / f"{n}_instances.png" for n in names}, seconds, report.megapixels


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def table(summary: dict[str, dict[str, float]], label: str = "") -> list[str]:
    lines = [
        f"| group | images |{' method |' if label else ''} AP@0.5 | AP@0.75 | AP@0.9 | mean AP 0.5-0.9 | F1 | PQ | "
        "merged | split |",
        "|---|---|" + ("---|" if label else "") + "---|---|---|---|---|---|---|---|",
    ]
    for group, r in summary.items():
        cells = [f"{r[m]:.3f} ± {r[m + '_std']:.3f}" if m.startswith(("ap", "f1", "pq")) else f"{r[m]:.2f}"
                 for m in METRICS]  # fmt: skip
        lines.append(
            f"| {group} | {int(r['images'])} |" + (f" {label} |" if label else "") + " " + " | ".join(cells) + " |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument(
        "--pictures", action="store_true", help="write the best and the worst image of each group to the bundle's docs/"
    )
    args = parser.parse_args()
    path = RESULTS / "shipped_models.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": _threads()}
    for name in args.only:
        result[name] = SECTIONS[name](args.pictures)
        result[name]["command"] = "python benchmarks/shipped_models.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    machine = result["machine"]
    lines = [
        "# Shipped models on their validation splits",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores.",
        "",
    ]
    if "nuclei" in result:
        lines += _nuclei_markdown(result["nuclei"])
    if "em_membranes" in result:
        lines += _em_markdown(result["em_membranes"])
    if "brain_tumour_mr" in result:
        lines += _tumour_markdown(result["brain_tumour_mr"])
    (RESULTS / "shipped_models.md").write_text("\n".join(lines))
    print("\n".join(lines))


def nuclei_section(pictures: bool) -> dict:
    from medunet.data.datasets import dsb2018_stage1

    datalist = dsb2018_stage1()
    cases = datalist["validation"]
    groups = {Path(c["image"]).name.rsplit(".", 1)[0]: c["group"] for c in cases}
    predictions, seconds, megapixels = segment_cases("nuclei", cases, Path(tempfile.mkdtemp(prefix="medunet-")))
    per_image = score(predictions, cases)
    docs = REPO / "bundles" / "nuclei" / "docs"
    return {
        "model": "nuclei",
        "data": {"dataset": "dsb2018_stage1", "split": datalist["split"], "validation": len(cases)},
        "summary": summarise(per_image, groups),
        "seconds": round(seconds, 2),
        "megapixels": round(megapixels, 3),
        "seconds_per_megapixel": round(seconds / megapixels, 3),
        "per_image": per_image,
        "groups": groups,
        "pictures": _pictures(per_image, groups, predictions, cases, docs) if pictures else [],
    }


def em_section(pictures: bool) -> dict:
    from medunet.data.datasets import isbi2012_em
    from medunet.metrics.isbi import isbi_scores, vrand_vinfo
    from medunet.utils.labels import label_components

    cases = isbi2012_em()["validation"]
    folder = Path(tempfile.mkdtemp(prefix="medunet-"))
    predictions, seconds, megapixels = segment_cases("em_membranes", cases, folder)
    per_slice = {}
    for case in cases:
        name = Path(case["image"]).name.rsplit(".", 1)[0]
        truth = np.asarray(Image.open(case["label"])) > 127
        cells = label_components(truth)
        instances = np.asarray(Image.open(predictions[name])).astype(np.int64)
        classes = np.asarray(Image.open(folder / "out" / f"{name}_seg.png"))
        vrand, vinfo = vrand_vinfo(instances, cells)
        challenge = isbi_scores((classes > 0).astype(np.float64), truth)  # the PNG stores the cell class as 255
        per_slice[name] = {
            "vrand_thinned": vrand,
            "vinfo_thinned": vinfo,
            "instances": int(instances.max()),
            "true_cells": int(cells.max()),
            "class_map_vrand_thinned": challenge["vrand_thinned"],
            "class_map_pixel_error": challenge["pixel_error"],
        }
    keys = list(next(iter(per_slice.values())))
    summary = {k: float(np.mean([v[k] for v in per_slice.values()])) for k in keys}
    summary.update({f"{k}_std": float(np.std([v[k] for v in per_slice.values()])) for k in keys})
    if pictures:
        name = min(per_slice, key=lambda n: per_slice[n]["vrand_thinned"])
        case = next(c for c in cases if Path(c["image"]).name.startswith(name))
        _em_picture(case, predictions[name], REPO / "bundles" / "em_membranes" / "docs" / "worst_slice.png")
    return {
        "model": "em_membranes",
        "data": {"dataset": "isbi2012_em", "split": "slices 00-19 train, 20-24 validate", "validation": len(cases)},
        "summary": summary,
        "seconds": round(seconds, 2),
        "megapixels": round(megapixels, 3),
        "seconds_per_megapixel": round(seconds / megapixels, 3),
        "per_image": per_slice,
    }


def tumour_section(pictures: bool) -> dict:
    import nibabel as nib
    import torch
    from tumour3d import scores  # the tumour benchmark's Dice / HD95, so both report the same metric

    from medunet.apps.segment import segment
    from medunet.data.datasets import TUMOUR_CHANNELS, TUMOUR_MASK, tcia_pgbm_tumor
    from medunet.io import read_study_channels

    cases = tcia_pgbm_tumor(fold=None)["validation"]
    folder = Path(tempfile.mkdtemp(prefix="medunet-"))
    per_study, seconds = {}, 0.0
    for case in cases:
        start = time.perf_counter()
        report = segment("brain_tumour_mr", case["image"], folder / case["study"], settings={"device": "cpu"},
                         progress=False)  # fmt: skip
        seconds += time.perf_counter() - start
        [outputs] = report.outputs.values()
        [nifti] = [p for p in outputs if p.endswith("_seg.nii.gz")]
        prediction = torch.from_numpy(np.asarray(nib.load(nifti).dataobj) == 1)
        data = read_study_channels(case["image"], TUMOUR_CHANNELS, label=TUMOUR_MASK)
        assert data.label is not None
        per_study[case["study"]] = scores(
            prediction, torch.from_numpy(data.label[None] == 1), list(data.reference.spacing)
        )
    return {
        "model": "brain_tumour_mr",
        "data": {
            "dataset": "tcia_pgbm_tumor",
            "split": "all 5 studies trained on (training-data scores)",
            "validation": len(cases),
        },
        "summary": {
            "dice": float(np.mean([v["dice"] for v in per_study.values()])),
            "dice_std": float(np.std([v["dice"] for v in per_study.values()])),
        },
        "seconds_per_study": round(seconds / len(cases), 2),
        "per_image": per_study,
    }


def _tumour_markdown(tumour: dict) -> list[str]:
    lines = [
        "## brain_tumour_mr (the 5 studies it was trained on)",
        "",
        f"Command: `{tumour['command']}`. Training-data scores: the model was trained on all 5 studies. Dice "
        f"{tumour['summary']['dice']:.3f} ± {tumour['summary']['dice_std']:.3f}; "
        f"{tumour['seconds_per_study']} s per study (SEG, RTSTRUCT, SR and NIfTI written).",
        "",
        "| study | Dice | HD95 (mm) | marked / tumour voxels |",
        "|---|---|---|---|",
    ]
    for study, r in tumour["per_image"].items():
        lines.append(
            f"| {study} | {r['dice']:.3f} | {r['hd95_mm']:.1f} | {r['predicted_voxels']} / {r['tumour_voxels']} |"
        )
    return [*lines, ""]


SECTIONS = {"nuclei": nuclei_section, "em_membranes": em_section, "brain_tumour_mr": tumour_section}


def _nuclei_markdown(nuclei: dict) -> list[str]:
    return [
        f"## nuclei (`{nuclei['command']}`)",
        "",
        f"{nuclei['data']['validation']} validation images of {nuclei['data']['dataset']} ({nuclei['data']['split']});"
        " scores by medunet.metrics.instance_scores, mean ± standard deviation over the images; AP is "
        "TP / (TP + FP + FN) at the IoU threshold (the DSB 2018 metric).",
        "",
        *table(nuclei["summary"]),
        "",
        f"Segmenting the {nuclei['data']['validation']} images ({nuclei['megapixels']} megapixels, with the "
        f"instances, overlays and per-instance tables written): {nuclei['seconds']} s, "
        f"{nuclei['seconds_per_megapixel']} s per megapixel.",
        "",
    ]


def _em_markdown(em: dict) -> list[str]:
    lines = [
        f"## em_membranes (`{em['command']}`)",
        "",
        f"ISBI 2012 slices 20-24 ({em['data']['split']}). V_Rand / V_Info: the challenge's thinned scores "
        "(medunet.metrics.isbi) of the instance output (the cells, a partition of the image) against the connected "
        "components of the true cells; the class map's V_Rand and pixel error as the challenge computes them for a "
        "binary proposal.",
        "",
        "| slice | V_Rand (instances) | V_Info (instances) | instances | true cells | V_Rand (class map) | pixel error |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = {**em["per_image"], "mean": em["summary"]}
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['vrand_thinned']:.4f} | {r['vinfo_thinned']:.4f} | {r['instances']:.0f} | "
            f"{r['true_cells']:.0f} | {r['class_map_vrand_thinned']:.4f} | {r['class_map_pixel_error']:.4f} |"
        )
    s = em["summary"]
    lines += [
        "",
        f"V_Rand (instances) {s['vrand_thinned']:.4f} ± {s['vrand_thinned_std']:.4f} (standard deviation over the "
        f"slices). Segmenting the 5 slices ({em['megapixels']} megapixels, flip test-time augmentation): "
        f"{em['seconds']} s, {em['seconds_per_megapixel']} s per megapixel.",
        "",
    ]
    return lines


def _em_picture(case: dict[str, str], prediction: Path, target: Path) -> None:
    """The slice with the true cells outlined in red and the predicted ones in green."""
    from medunet.utils.labels import label_components

    truth = label_components(np.asarray(Image.open(case["label"])) > 127)
    _save_picture(_outlined(case["image"], truth, prediction), target)


def _outlined(image_path: str, truth: np.ndarray, prediction: Path) -> np.ndarray:
    """The image in RGB (0..1) with the reference objects outlined in red and the predicted ones in green
    (scikit-image's ``mark_boundaries``)."""
    from skimage.segmentation import mark_boundaries

    image = np.asarray(Image.open(image_path).convert("RGB")).astype(np.float64) / 255
    pred = np.asarray(Image.open(prediction)).astype(np.int64)
    return mark_boundaries(mark_boundaries(image, truth, color=(1, 0, 0)), pred, color=(0, 1, 0))


def _pictures(
    per_image: dict[str, dict[str, float]],
    groups: dict[str, str],
    predictions: dict[str, Path],
    cases: list[dict[str, str]],
    folder: Path,
) -> list[dict[str, object]]:
    """Pictures of the best and the worst image by AP@0.5 of each group: the image with the reference nuclei
    outlined in red and the predicted ones in green (:func:`_outlined`), written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {Path(c["image"]).name.rsplit(".", 1)[0]: c for c in cases}
    chosen = []
    for group in sorted(set(groups.values())):
        names = sorted((n for n in per_image if groups[n] == group), key=lambda n: per_image[n]["ap@0.50"])
        picks = [("worst", names[0]), ("best", names[-1])] if len(names) > 1 else [("only", names[0])]
        for which, name in picks:
            truth = np.asarray(Image.open(images[name]["label"])).astype(np.int64)
            target = folder / f"{group}_{which}.png"
            _save_picture(_outlined(images[name]["image"], truth, predictions[name]), target)
            chosen.append({"file": target.name, "image": name, "group": group, **{
                m: round(per_image[name][m], 3) for m in ("ap@0.50", "ap_mean", "merged", "split", "n_true", "n_pred")
            }})  # fmt: skip
    return chosen


PICTURE_SIZE = 512


def _save_picture(rgb: np.ndarray, target: Path) -> None:
    """An RGB float picture as a PNG with a 128-colour palette (a third of the size; the outlines keep their
    colours), its central ``PICTURE_SIZE`` square where it is larger, so that the model cards' pictures keep the
    repository small."""
    starts = [max(0, (n - PICTURE_SIZE) // 2) for n in rgb.shape[:2]]
    rgb = rgb[starts[0] : starts[0] + PICTURE_SIZE, starts[1] : starts[1] + PICTURE_SIZE]
    picture = Image.fromarray((rgb * 255).round().astype(np.uint8))
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
