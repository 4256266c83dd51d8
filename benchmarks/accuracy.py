"""Accuracy of medunet's recipes on real and generated data, under stated CPU budgets.

Writes benchmarks/results/accuracy.json (settings, commands, wall times, every metric) and figures under
benchmarks/results/accuracy_*.png and its report benchmarks/results/accuracy.md; docs/benchmarks.md presents them
beside the other benchmarks (its sections are kept by hand, so a run here never overwrites what others wrote there). Sections (``--only`` picks some):

- ``default``: the main job (unet2d + configs/quickstart.json) on the generated cells; object F1, AP@0.5,
  Rand error on the 2 validation images.
- ``isbi``: ISBI 2012, train slices 00-19, test 20-24 (configs/isbi2012_em.json + configs/isbi2012_cpu.json);
  every metric, with and without flip test-time augmentation, beside the paper's numbers.
- ``dsb``: DSB 2018 nuclei (12 images; the last 3 by file name test), weight map on (w0 = 10) vs off (w0 = 0,
  class balance only), same budget, each over ``--seeds``; every network evaluated with connected components (the
  paper's post-processing) and with both watershed splits.
- ``3d``: the 3D network with anisotropic pooling on the EM slices stacked as a volume vs the 2D network
  slice by slice (short runs: 12 epochs of one volume vs 6 epochs of 20 slices, wall times stated);
  spleen CT and spinal-cord MR Dice (tiny data sets, 12 epochs).
- ``3d_recipe``: spleen CT and spinal-cord MR again with the 3D recipe of the brain_tumour_mr bundle (Adam, Dice +
  cross-entropy without class weights, half the tiles holding foreground, 2 tiles per step, no elastic deformation)
  and 300 optimiser steps instead of the ``3d`` section's 12 (spleen) / 24 (spinal cord): the same networks and
  tiles, so the difference is the recipe and the number of steps.

Every training runs the documented ``python -m monai.bundle run training`` command in a fresh output folder
under ``outputs/accuracy/`` (``--reuse`` evaluates a finished folder again instead of retraining, unless its
command or a config file changed since); every
evaluation uses ``medunet.apps.evaluation`` (the ``medunet evaluate`` command's code).

Usage: ``python benchmarks/accuracy.py [--only default isbi dsb 3d 3d_recipe] [--seeds 0 1 2] [--reuse]``.
Needs ../shared/data (or $MEDUNET_DATA_DIR) for all but ``default``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import nibabel as nib
import numpy as np
import torch
from PIL import Image

from medunet.apps.evaluation import Predictor, evaluate_folder, load_label, score_case
from medunet.data.datasets import dataset_root
from medunet.handlers.checkpoint import latest_checkpoint
from medunet.transforms.functional.instances import instances_from_prediction

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
OUT = REPO / "outputs" / "accuracy"
PAPER_ISBI = {
    "rand_error": 0.0382,
    "pixel_error": 0.0611,
    "warping_error": 0.000353,
    "note": "Ronneberger et al. 2015, Table 1: the challenge's hidden test set (30 slices), the metrics of 2015",
}
MAIN = ("f1", "ap@0.50", "ap_mean", "pq", "merged", "split", "rand_error", "instance_rand_error", "dice", "pixel_error")


def train(name: str, configs: list[str], overrides: dict[str, Any], reuse: bool) -> dict[str, Any]:
    """Runs the bundle's training in outputs/accuracy/<name>; returns command, wall time and the MLflow history."""
    out = OUT / name
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", repr(configs).replace('"', "'"),
           "--output_dir", str(out)]  # fmt: skip
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]  # Python literals, as fire parses them
    done = out / "accuracy_run.json"
    command = "python " + " ".join(cmd[1:])
    recipe = {c: hashlib.sha256((REPO / c).read_bytes()).hexdigest() for c in configs}
    if reuse and done.is_file():
        record = json.loads(done.read_text())
        if (record["command"], record.get("recipe")) == (command, recipe):
            return record
        print(f"{name}: the command or a config file changed since the finished run, training again", flush=True)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    start = time.perf_counter()
    with open(out.parent / f"{name}.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    record = {"command": command, "recipe": recipe, "wall_seconds": round(wall, 1), "history": history(out)}
    done.write_text(json.dumps(record, indent=1) + "\n")
    return record


def history(out: Path) -> dict[str, list[tuple[float, int, float]]]:
    """Validation metrics per epoch as ``(minutes since the run's start, epoch, value)``."""
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time DESC"]
    )
    run = runs[0]
    start = run.info.start_time
    result = {}
    for key in run.data.metrics:
        if key.startswith("val_") or key == "train_loss":
            result[key] = [
                ((m.timestamp - start) / 60000, m.step, m.value)
                for m in client.get_metric_history(run.info.run_id, key)
            ]
    return result


def final_weights(name: str) -> Path:
    """The last epoch's weights. The test images also serve as the bundles' validation set here, so choosing
    the checkpoint with the best validation score would select on the test set."""
    found = latest_checkpoint(OUT / name)
    if found is None:
        raise FileNotFoundError(f"no checkpoint_epoch=N.pt in {OUT / name}")
    return Path(found)


def split_folders(pairs: list[tuple[Path, Path]], name: str) -> tuple[Path, Path]:
    """Folders of links to the test images and labels (the evaluation command reads folders)."""
    root = OUT / f"{name}_test"
    if root.exists():
        shutil.rmtree(root)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for image, label in pairs:
        os.symlink(image.resolve(), root / "images" / image.name)
        os.symlink(label.resolve(), root / "labels" / image.name)
    return root / "images", root / "labels"


def summary(result: dict[str, Any]) -> dict[str, float]:
    return {
        k: round(float(v), 4)
        for k, v in result["mean"].items()
        if k in MAIN or k.startswith(("vrand", "vinfo", "isbi"))
    }


def section_default(reuse: bool) -> dict[str, Any]:
    run = train("default", ["bundles/unet2d/configs/train.json", "configs/quickstart.json"], {}, reuse)
    data = json.loads((OUT / "default" / "default_data" / "dataset.json").read_text())
    base = OUT / "default" / "default_data"
    pairs = [(base / c["image"], base / c["label"]) for c in data["validation"]]
    images, labels = split_folders(pairs, "default")
    features = json.loads((REPO / "configs" / "quickstart.json").read_text())["features"]
    result = evaluate_folder("bundles/unet2d", final_weights("default"), images, labels, OUT / "default_eval",
                             "instances", overrides={"features": features, "device": "cpu"})  # fmt: skip
    return {"train": run, "test_images": [p[0].name for p in pairs], "metrics": summary(result)}


def section_isbi(reuse: bool) -> dict[str, Any]:
    root = dataset_root() / "isbi2012_em"
    configs = ["bundles/unet2d/configs/train.json", "configs/isbi2012_em.json", "configs/isbi2012_cpu.json"]
    run = train("isbi2012", configs, {}, reuse)
    pairs = [(root / "images" / f"{i:02d}.png", root / "labels" / f"{i:02d}.png") for i in range(20, 25)]
    images, labels = split_folders(pairs, "isbi2012")
    features = json.loads((REPO / "configs" / "isbi2012_cpu.json").read_text())["features"]
    em = json.loads((REPO / "configs" / "isbi2012_em.json").read_text())
    overrides = {"features": features, "device": "cpu", "intensity_preset": "microscopy"}
    overrides |= {k: v for k, v in em.items() if k.startswith("instance_")}  # EM: instances partition the image
    ckpt = final_weights("isbi2012")
    plain = evaluate_folder("bundles/unet2d", ckpt, images, labels, OUT / "isbi2012_eval", "threshold", (), overrides)
    tta = evaluate_folder(
        "bundles/unet2d", ckpt, images, labels, OUT / "isbi2012_eval_tta", "threshold", (0, 1), overrides
    )
    figures(ckpt, overrides, pairs[0], run)
    return {
        "train": run,
        "test": "slices 20-24",
        "checkpoint": ckpt.name,
        "metrics": summary(plain),
        "metrics_flip_tta": summary(tta),
        "paper": PAPER_ISBI,
    }


def figures(ckpt: Path, overrides: dict[str, Any], pair: tuple[Path, Path], run: dict[str, Any]) -> None:
    """Learning curve against wall-clock minutes, and the prediction / error map of one test slice."""
    predictor = Predictor("bundles/unet2d", ckpt, overrides)
    probs = predictor(pair[0])
    label = load_label(pair[1]) > 127
    instances = instances_from_prediction(probs, **predictor.instance_kwargs)
    image = np.asarray(Image.open(pair[0]).convert("L")).T
    pred = probs.argmax(0) > 0
    errors = np.zeros((*label.shape, 3), np.float32)
    errors[pred & ~label] = (1, 0, 0)  # predicted cell on a membrane: a gap missed (merges cells)
    errors[~pred & label] = (0, 0.6, 1)  # predicted membrane inside a cell
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.2, 1, (int(instances.max()) + 1, 3))
    colours[0] = 0
    for ax, (title, shown) in zip(axes, [
        ("slice 20", image.T), ("cell probability", probs[1].T), ("instances (post-processing)", colours[instances].transpose(1, 0, 2)),
        ("errors: red = missed membrane, blue = false membrane", errors.transpose(1, 0, 2)),
    ]):  # fmt: skip
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(RESULTS / "accuracy_isbi_slice20.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, colour in (
        ("val_rand_error", "tab:red"),
        ("val_instance_rand_error", "tab:orange"),
        ("val_object_f1", "tab:green"),
        ("val_pixel_error", "tab:blue"),
    ):
        if run["history"].get(key):
            t, _, v = zip(*run["history"][key])
            ax.plot(t, v, "o-", color=colour, label=key)
    ax.set_xlabel("wall-clock minutes (2 CPU cores)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("ISBI 2012: validation on slices 20-24 during training", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "accuracy_isbi_curve.png", dpi=90)
    plt.close(fig)


# Post-processings the DSB section compares. "components" is the paper's: connected components of the class map,
# so that the weight map's effect on the network is measured alone; the watersheds are medunet's splitting options.
DSB_POSTPROCESSING = {
    "components": {"instance_split": "none"},
    "watershed_probability": {"instance_split": "probability"},
    "watershed_distance": {"instance_split": "distance"},
}
DSB_KEYS = ("ap@0.50", "f1", "merged", "split", "ap_mean", "pq")


def section_dsb(seeds: list[int], reuse: bool) -> dict[str, Any]:
    root = dataset_root() / "dsb2018_nuclei"
    files = sorted((root / "images").glob("*.png"))
    pairs = [(p, root / "labels" / p.name) for p in files[-3:]]
    images, labels = split_folders(pairs, "dsb2018")
    configs = ["bundles/unet2d/configs/train.json", "configs/dsb2018_nuclei.json", "configs/dsb2018_cpu.json"]
    recipe = json.loads((REPO / "configs" / "dsb2018_cpu.json").read_text())
    overrides = {"features": recipe["features"], "device": "cpu"}
    runs: dict[str, Any] = {"weight_map": [], "no_weight_map": []}
    for seed in seeds:
        for arm, w0 in (("weight_map", 10.0), ("no_weight_map", 0.0)):
            name = f"dsb2018_{arm}_seed{seed}"
            run = train(name, configs, {"seed": seed, "weight_w0": w0}, reuse)
            metrics = {
                post: summary(evaluate_folder("bundles/unet2d", final_weights(name), images, labels,
                                              OUT / f"{name}_eval_{post}", "instances", (), {**overrides, **extra}))
                for post, extra in DSB_POSTPROCESSING.items()
            }  # fmt: skip
            runs[arm].append({"seed": seed, "wall_seconds": run["wall_seconds"], "command": run["command"],
                              "metrics": metrics})  # fmt: skip
    stats: dict[str, Any] = {
        post: {
            arm: {
                k: {
                    "mean": round(float(np.mean([r["metrics"][post][k] for r in items])), 4),
                    "std": round(float(np.std([r["metrics"][post][k] for r in items])), 4),
                }
                for k in DSB_KEYS
            }
            for arm, items in runs.items()
        }
        for post in DSB_POSTPROCESSING
    }
    return {"test_images": [p[0].name for p in pairs], "train_images": len(files) - 3, "epochs": recipe["epochs"],
            "runs": runs, "summary": stats, "goal": dsb_goal(stats)}  # fmt: skip


def dsb_goal(stats: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """Per post-processing: does the weight map lower the mean merged count and raise the mean AP@0.5?"""
    return {
        post: {
            "fewer_merged": s["weight_map"]["merged"]["mean"] < s["no_weight_map"]["merged"]["mean"],
            "higher_ap50": s["weight_map"]["ap@0.50"]["mean"] > s["no_weight_map"]["ap@0.50"]["mean"],
        }
        for post, s in stats.items()
    }


def em_volumes() -> tuple[Path, Path]:
    """The EM slices stacked as NIfTI volumes (x, y, z): train 00-19, test 20-24, with a data list."""
    root = dataset_root() / "isbi2012_em"
    out = OUT / "em3d_data"
    out.mkdir(parents=True, exist_ok=True)
    items = {}
    for name, indices in (("train", range(20)), ("test", range(20, 25))):
        img = np.stack([np.asarray(Image.open(root / "images" / f"{i:02d}.png").convert("L")).T for i in indices], -1)
        lab = np.stack([np.asarray(Image.open(root / "labels" / f"{i:02d}.png")).T for i in indices], -1)
        affine = np.diag([4.0, 4.0, 50.0, 1.0])  # ISBI 2012: 4x4 nm pixels, 50 nm sections
        nib.save(nib.Nifti1Image(img.astype(np.uint8), affine), out / f"em_{name}.nii.gz")
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), affine), out / f"em_{name}_label.nii.gz")
        items[name] = {"image": f"em_{name}.nii.gz", "label": f"em_{name}_label.nii.gz"}
    datalist = {
        "name": "isbi2012_em_volume",
        "labels": {"0": "membrane", "1": "cell"},
        "training": [items["train"]],
        "validation": [items["test"]],
    }
    (out / "dataset.json").write_text(json.dumps(datalist, indent=1))
    return out, out / "em_test.nii.gz"


def section_3d(reuse: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    data_dir, test_volume = em_volumes()
    em = {
        k: v
        for k, v in json.loads((REPO / "configs" / "isbi2012_em.json").read_text()).items()
        if k.startswith("instance_")
    }
    em3d = em | {
        "dataset_dir": str(data_dir), "label_rule": "threshold", "weight_binary": True, "weight_separate": False,
        "intensity_preset": "microscopy", "features": [16, 32, 64, 128], "pool_sizes": [[2, 2, 1], [2, 2, 1], [2, 2, 1]],
        "output_tile": [100, 100, 4], "val_output_tile": [100, 100, 4], "samples_per_image": 4, "optimizer_name": "adam",
        "learning_rate": 0.001, "epochs": 12, "val_interval": 6, "num_workers": 2,
    }  # fmt: skip
    run3 = train("em3d", ["bundles/unet3d/configs/train.json"], em3d, reuse)
    keys = ("features", "pool_sizes", "intensity_preset")
    predictor = Predictor("bundles/unet3d", final_weights("em3d"), {k: em3d[k] for k in keys} | {"device": "cpu"})
    probs = predictor(test_volume)
    label = load_label(OUT / "em3d_data" / "em_test_label.nii.gz")
    per_slice = [
        score_case(probs[..., z], label[..., z], "threshold", 2, predictor.instance_kwargs)
        for z in range(label.shape[-1])
    ]
    result["em_3d"] = {
        "train": run3, "recipe": em3d,
        "metrics_per_slice_mean": {k: round(float(np.mean([s[k] for s in per_slice])), 4) for k in per_slice[0] if k in MAIN or k.startswith("vrand")},
    }  # fmt: skip
    em2d = {
        k: em3d[k] for k in ("features", "optimizer_name", "learning_rate", "epochs", "val_interval", "num_workers")
    }
    em2d |= {
        "features": [16, 32, 64, 128, 256],
        "output_tile": [100, 100],
        "samples_per_image": 2,
        "epochs": 6,
        "val_interval": 3,
    }
    run2 = train("em2d_short", ["bundles/unet2d/configs/train.json", "configs/isbi2012_em.json"], em2d, reuse)
    root = dataset_root() / "isbi2012_em"
    images, labels = split_folders(
        [(root / "images" / f"{i:02d}.png", root / "labels" / f"{i:02d}.png") for i in range(20, 25)], "em2d"
    )
    res2 = evaluate_folder("bundles/unet2d", final_weights("em2d_short"), images, labels, OUT / "em2d_eval", "threshold",
                           (), {"features": em2d["features"], "device": "cpu"} | em)  # fmt: skip
    result["em_2d_slice_by_slice"] = {"train": run2, "recipe": em2d, "metrics": summary(res2)}
    for name, overlay, extra in (
        ("spleen_ct", "configs/spleen_ct.json", {"epochs": 12, "val_interval": 6, "features": [16, 32, 64, 128], "optimizer_name": "adam", "learning_rate": 0.001, "samples_per_image": 4}),
        ("spinal_cord_mr", "configs/spinal_cord_mr.json", {"epochs": 12, "val_interval": 6, "features": [16, 32, 64, 128], "optimizer_name": "adam", "learning_rate": 0.001, "samples_per_image": 4}),
    ):  # fmt: skip
        run = train(name, ["bundles/unet3d/configs/train.json", overlay], extra, reuse)
        dice = run["history"].get("val_mean_dice", [])
        result[name] = {
            "train": run,
            "recipe": extra,
            "final_val_dice": dice[-1][2] if dice else None,
            "best_val_dice": max((d[2] for d in dice), default=None),
        }
    return result


# The 3D recipe of the brain_tumour_mr bundle (bundles/brain_tumour_mr/configs/train.json), as overrides of unet3d.
RECIPE_3D = {
    "optimizer_name": "adam", "learning_rate": 0.001, "weight_decay": 1e-5, "dice_weight": 1.0, "weight_w0": 0.0,
    "weight_classes": None, "weight_separate": False, "foreground_ratio": 0.5, "samples_per_image": 2,
    "elastic_prob": 0.0,
}  # fmt: skip
RECIPE_STEPS = 300


def section_3d_recipe(reuse: bool) -> dict[str, Any]:
    """Spleen and spinal cord with the 3D recipe for RECIPE_STEPS optimiser steps (one step per training volume
    and epoch: batch 1 of 2 tiles)."""
    result: dict[str, Any] = {"recipe": RECIPE_3D, "steps": RECIPE_STEPS}
    for name, overlay, volumes in (("spleen_ct", "configs/spleen_ct.json", 1),
                                   ("spinal_cord_mr", "configs/spinal_cord_mr.json", 2)):  # fmt: skip
        epochs = RECIPE_STEPS // volumes
        extra = RECIPE_3D | {"features": [16, 32, 64, 128], "epochs": epochs, "val_interval": epochs // 4,
                             "checkpoint_interval": epochs // 4}  # fmt: skip  # the 3d section's network
        run = train(f"{name}_recipe", ["bundles/unet3d/configs/train.json", overlay], extra, reuse)
        dice = run["history"].get("val_mean_dice", [])
        result[name] = {
            "train": run,
            "recipe": extra,
            "val_dice": [(round(d[0], 2), d[1], round(d[2], 4)) for d in dice],
            "final_val_dice": dice[-1][2] if dice else None,
        }
    return result


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(rows: list[tuple[str, dict[str, Any]]], keys: tuple[str, ...]) -> list[str]:
    lines = ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(m.get(k, "")) for k in keys) + " |" for name, m in rows]
    return lines


def _notes(section: dict[str, Any]) -> list[str]:
    return [f"- {note}" for note in section.get("notes", [])] + ([""] if section.get("notes") else [])


def render(result: dict[str, Any]) -> str:
    """The report (benchmarks/results/accuracy.md) from accuracy.json (and the precision results when present)."""
    out = [
        "# Benchmarks: accuracy of medunet's recipes",
        "",
        "Produced by `python benchmarks/accuracy.py` (results in `benchmarks/results/accuracy.json`; "
        "`--render` rewrites this page from them). Machine: "
        + result.get("machine", "?")
        + ". Every training runs the "
        "documented `python -m monai.bundle run training` command (printed per run in the JSON) from a fresh output "
        "folder; every evaluation uses the code of `medunet evaluate` on the weights of the last epoch (the test images are "
        "also the bundles' validation set here, so a best-by-validation checkpoint would be chosen on the test set). "
        "Seeds: the bundle's `seed` (0 unless stated).",
        "",
        "Metric definitions: `medunet/metrics/instances.py` (AP at IoU 0.5-0.9 as in DSB 2018 / StarDist, F1 and "
        "panoptic quality at IoU 0.5, merged and split objects), `medunet/metrics/isbi.py` (the ISBI 2012 challenge's "
        "V_Rand / V_Info after border thinning, higher is better, and pixel error as 1 - maximal F-score), "
        "`medunet/metrics/segmentation.py` (Rand error = 1 - adapted Rand F-score, scikit-image's definition, "
        "between the connected components of the predicted and true object class; *instance Rand error* is the "
        "same score on the instances of the post-processing).",
        "",
    ]
    keys = ("f1", "ap@0.50", "ap_mean", "pq", "merged", "split", "rand_error", "instance_rand_error", "dice")
    if "default" in result:
        d = result["default"]
        out += ["## The main job on the generated cells", "",
                f"`{d['train']['command']}`: {d['train']['wall_seconds'] / 60:.1f} min of training on 2 CPU cores; "
                f"test images {', '.join(d['test_images'])} (the generated validation split).", ""]  # fmt: skip
        out += [*_table([("unet2d + quickstart", d["metrics"])], keys), "", *_notes(d)]
    if "isbi" in result:
        d = result["isbi"]
        ikeys = (
            "rand_error",
            "instance_rand_error",
            "vrand_thinned",
            "vinfo_thinned",
            "isbi_pixel_error",
            "pixel_error",
            "dice",
            "f1",
        )
        out += ["## ISBI 2012 (train slices 00-19, test 20-24)", "",
                f"`{d['train']['command']}`: {d['train']['wall_seconds'] / 60:.1f} min of training on 2 CPU cores.", ""]  # fmt: skip
        out += _table([("no TTA", d["metrics"]), ("flip TTA (2 axes)", d["metrics_flip_tta"])], ikeys)
        p = d["paper"]
        out += ["", f"The paper: Rand error {p['rand_error']}, pixel error {p['pixel_error']} ({p['note']}); "
                "theirs are not comparable one to one: another test set, and the challenge's metrics of 2015.", "",
                "![learning curve](../benchmarks/results/accuracy_isbi_curve.png)", "",
                "![slice 20](../benchmarks/results/accuracy_isbi_slice20.png)", "", *_notes(d)]  # fmt: skip
    if "dsb" in result:
        d = result["dsb"]
        out += ["## DSB 2018 nuclei: the weight map on vs off", "",
                f"Train on {d['train_images']} images, test on {', '.join(d['test_images'])}; w0 = 10 vs 0 (class "
                f"balance kept), same recipe and {d.get('epochs', '?')} epochs, seeds "
                f"{[r['seed'] for r in d['runs']['weight_map']]}. Each network is evaluated with three post-processings: "
                "`components` (the paper's: connected components of the class map, the weight map's effect alone), "
                "`watershed_probability` (the bundles' default) and `watershed_distance`. Mean (std) over seeds:", "",
                "| post-processing | weight map | AP@0.5 | F1 | merged | split | AP 0.5-0.9 | PQ |",
                "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for post, arms in d["summary"].items():
            for arm in ("weight_map", "no_weight_map"):
                s = arms[arm]
                cells = " | ".join(f"{s[k]['mean']:.3f} ({s[k]['std']:.3f})" for k in DSB_KEYS)
                out.append(f"| {post} | {'on' if arm == 'weight_map' else 'off'} | {cells} |")
        out += ["", "The goal (the weight map lowers merged nuclei and raises AP@0.5, means over seeds):", ""]
        for post, goal in d.get("goal", {}).items():
            out.append(f"- {post}: fewer merged {'yes' if goal['fewer_merged'] else 'NO'}, "
                       f"higher AP@0.5 {'yes' if goal['higher_ap50'] else 'NO'}")  # fmt: skip
        out += ["", f"Command of one run: `{d['runs']['weight_map'][0]['command']}`.", "", *_notes(d)]
    if "3d" in result:
        d = result["3d"]
        out += [
            "## 3D",
            "",
            "EM slices 00-19 stacked as one volume (4x4x50 nm), tested on 20-24; per-slice metrics (mean over the 5 slices):",
            "",
        ]
        out += _table([("3D U-Net, pooling (2,2,1)", d["em_3d"]["metrics_per_slice_mean"]),
                       ("2D U-Net slice by slice", d["em_2d_slice_by_slice"]["metrics"])],
                      ("dice", "rand_error", "instance_rand_error", "vrand_thinned", "pixel_error"))  # fmt: skip
        out += [
            "",
            f"Training: 3D {d['em_3d']['train']['wall_seconds'] / 60:.1f} min, 2D {d['em_2d_slice_by_slice']['train']['wall_seconds'] / 60:.1f} min.",
            "",
        ]
        for name in ("spleen_ct", "spinal_cord_mr"):
            r = d[name]
            out.append(f"- {name}: validation Dice {_fmt(r['final_val_dice'])} (best {_fmt(r['best_val_dice'])}) after "
                       f"{r['train']['wall_seconds'] / 60:.1f} min; tiny data (spleen: one case, trained and validated on it; "
                       "spinal cord: trained on T1w and T2w, validated on T2star of the same subject).")  # fmt: skip
        out += _notes(d)
        out.append("")
    if "3d_recipe" in result:
        d = result["3d_recipe"]
        out += ["### The 3D recipe on spleen CT and spinal-cord MR", "",
                f"The same networks and tiles as above, trained with the brain_tumour_mr bundle's recipe for "
                f"{d['steps']} optimiser steps (the runs above: 12 steps of 4 tiles for spleen, 24 for spinal cord):",
                "", "| data | validation Dice by epoch (minutes, epoch, Dice) | final | wall min |", "|---|---|---|---|"]  # fmt: skip
        for name in ("spleen_ct", "spinal_cord_mr"):
            r = d[name]
            curve = ", ".join(f"({m}, {e}, {v:.3f})" for m, e, v in r["val_dice"])
            out.append(f"| {name} | {curve} | {_fmt(r['final_val_dice'])} | {r['train']['wall_seconds'] / 60:.1f} |")
        out += ["", f"Command (spleen): `{d['spleen_ct']['train']['command']}`.", "", *_notes(d)]
    precision = RESULTS / "precision.md"
    if precision.is_file():
        out += ["## CPU precision and memory layout", "", "From `benchmarks/results/precision.md`:", ""]
        out += [*precision.read_text().splitlines()[2:], ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        default=["default", "isbi", "dsb", "3d"],
        choices=["default", "isbi", "dsb", "3d", "3d_recipe"],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate finished training folders again instead of retraining"
    )
    parser.add_argument("--render", action="store_true", help="only rewrite results/accuracy.md from accuracy.json")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "accuracy.md").write_text(render(json.loads((RESULTS / "accuracy.json").read_text())))
        return
    torch.set_num_threads(2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "accuracy.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["machine"] = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, no GPU"
    )
    sections = {"default": lambda: section_default(args.reuse), "isbi": lambda: section_isbi(args.reuse),
                "dsb": lambda: section_dsb(args.seeds, args.reuse), "3d": lambda: section_3d(args.reuse),
                "3d_recipe": lambda: section_3d_recipe(args.reuse)}  # fmt: skip
    for name in args.only:
        start = time.perf_counter()
        result[name] = sections[name]()
        result[name]["section_seconds"] = round(time.perf_counter() - start, 1)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(
            name,
            json.dumps({k: v for k, v in result[name].items() if k in ("metrics", "summary")}, indent=1),
            flush=True,
        )
    (RESULTS / "accuracy.md").write_text(render(result))


if __name__ == "__main__":
    main()
