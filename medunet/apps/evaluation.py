"""Evaluate any checkpoint on any folder of images and labels, with every metric medunet reports.

``medunet evaluate --bundle bundles/unet2d --checkpoint best_model.pt --images DIR --labels DIR`` pairs each
image (PNG/TIFF, NIfTI, or a DICOM series folder) with the label of the same name in the label folder
(``x.png`` with ``x.png``, ``x_seg.png``, ``x_label.png`` or ``x_mask.png``; a DICOM series folder with a label
folder or file of the same name), runs the bundle's own inference pipeline (preprocessing, overlap-tile
inferer, optional flip test-time augmentation) and computes per image:

- Dice and IoU of each object class, pixel error (share of pixels of the wrong class);
- Rand error (1 - adapted Rand F-score) between the connected components of the object class, and between
  the instances of the post-processing;
- instance metrics (AP at IoU 0.5-0.9, F1, panoptic quality, merged and split objects) of the bundle's
  instance post-processing against the label's instances;
- for 2D two-class images, the ISBI 2012 challenge's scores (thinned V_Rand and V_Info, pixel error as
  1 - maximal F-score) from the object-class probability.

It prints a table and writes ``metrics.json`` (per image and the mean) and ``metrics.csv``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import convert_to_numpy

from medunet.apps.segmenter import inference_bundle
from medunet.engines.data import inference_datalist
from medunet.metrics import instance_scores, isbi_scores, pixel_error, rand_error, rand_error_instances
from medunet.networks import load_weights
from medunet.transforms import LoadImageOrSeriesd, label_to_classes, label_to_instances
from medunet.transforms.functional.instances import instances_from_prediction
from medunet.utils.enums import LabelRule, look_up
from medunet.utils.files import atomic_write_json, atomic_write_text

__all__ = ["Predictor", "evaluate_folder", "format_table", "load_label", "pair_cases", "score_case"]

logger = logging.getLogger(__name__)

LABEL_SUFFIXES = ("", "_seg", "_label", "_labels", "_mask", "_gt")
SHOWN = (
    "dice",
    "rand_error",
    "instance_rand_error",
    "f1",
    "ap@0.50",
    "ap_mean",
    "pq",
    "merged",
    "split",
    "vrand_thinned",
    "vinfo_thinned",
    "isbi_pixel_error",
)


def _stem(path: Path) -> tuple[str, str]:
    """(stem, extension) with the double extension ``.nii.gz`` kept together."""
    name = path.name
    for ext in (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"):
        if name.lower().endswith(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return name, ""


def pair_cases(images_dir: str | Path, labels_dir: str | Path) -> list[dict[str, str]]:
    """``[{"image": ..., "label": ...}]`` for every case in ``images_dir``; the label has the image's name,
    optionally with ``_seg``/``_label``/``_labels``/``_mask``/``_gt`` before the extension, in any supported format.

    Raises:
        FileNotFoundError: a folder is missing, or an image has no label (names the image and what was looked for).
    """
    labels_root = Path(labels_dir)
    if not labels_root.is_dir():
        raise FileNotFoundError(f"--labels {labels_dir!s} does not exist or is not a folder")
    candidates: dict[str, Path] = {}
    for p in labels_root.iterdir():
        stem, _ = _stem(p)
        candidates.setdefault(stem, p)
    pairs = []
    for case in inference_datalist(images_dir):
        image = Path(case["image"])
        stem, ext = _stem(image)
        found = next((candidates[stem + s] for s in LABEL_SUFFIXES if stem + s in candidates), None)
        if found is None:
            looked = ", ".join(f"{stem}{s}{ext or ''}" for s in LABEL_SUFFIXES[:3])
            raise FileNotFoundError(
                f"no label for image {image} in {labels_root} (looked for {looked}, ... in any format); "
                "give each image a label of the same name"
            )
        pairs.append({"image": str(image), "label": str(found)})
    return pairs


def _dice_iou(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    dices, ious = [], []
    for c in range(1, num_classes):
        p, t = pred == c, truth == c
        inter, total = float(np.sum(p & t)), float(p.sum() + t.sum())
        dice = 2 * inter / total if total else 1.0
        iou = inter / (total - inter) if total - inter else 1.0
        suffix = "" if num_classes == 2 else f"_class{c}"
        scores[f"dice{suffix}"], scores[f"iou{suffix}"] = dice, iou
        dices.append(dice)
        ious.append(iou)
    if num_classes > 2:
        scores["dice"], scores["iou"] = float(np.mean(dices)), float(np.mean(ious))
    return scores


class Predictor:
    """A bundle's inference pipeline (preprocessing, network with the checkpoint, inferer) returning class
    probabilities, and its instance post-processing settings.

    Args:
        bundle_dir: e.g. ``bundles/unet2d``.
        checkpoint: trained weights.
        overrides: bundle config overrides (e.g. ``{"features": [16, 32, 64, 128, 256]}``).
        flip_axes: flip test-time augmentation axes.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        checkpoint: str | Path,
        overrides: dict[str, Any] | None = None,
        flip_axes: Sequence[int] = (),
    ) -> None:
        parser = inference_bundle(bundle_dir, checkpoint, {**(overrides or {}), "flip_axes": list(flip_axes)})
        self.network = load_weights(parser.get_parsed_content("network"), checkpoint).eval()
        self.device = torch.device(parser.get_parsed_content("device"))
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.num_classes = int(parser.get_parsed_content("num_classes"))
        self.instance_kwargs: dict[str, Any] = {
            "split": str(parser.get_parsed_content("instance_split")),
            "min_size": int(parser.get_parsed_content("instance_min_size")),
            "seed_threshold": float(parser.get_parsed_content("instance_seed_threshold")),
            "seed_height": float(parser.get_parsed_content("instance_seed_height")),
            "seed_min_size": int(parser.get_parsed_content("instance_seed_min_size")),
            "fill": bool(parser.get_parsed_content("instance_fill")),
        }

    def __call__(self, image: str | Path) -> np.ndarray:
        """Class probabilities ``(C, *S)`` of one image file or DICOM series folder (in the loader's axis order)."""
        data = self.preprocessing({"image": str(image)})
        with torch.inference_mode():
            return self.inferer(data["image"][None].to(self.device), self.network)[0].float().cpu().numpy()


def score_case(
    probs: np.ndarray,
    label: np.ndarray,
    rule: str | LabelRule,
    num_classes: int,
    instance_kwargs: dict[str, Any],
    label_name: str = "label",
    image_name: str = "the prediction",
) -> dict[str, float]:
    """Every metric of one case: ``probs`` ``(C, *S)`` against a data set's ``label`` ``(*S)``.

    Raises:
        ValueError: shapes differ or the label's values do not fit ``rule`` (the message starts with ``label_name``).
    """
    spatial = tuple(probs.shape[1:])
    if label.shape != spatial:
        raise ValueError(
            f"{label_name} has shape {label.shape}, {image_name} has {spatial}; "
            "labels must have the image's size (same grid, no channel axis)"
        )
    try:
        truth_classes = label_to_classes(label, rule, num_classes)
        truth_instances = label_to_instances(label, rule)
    except ValueError as err:
        raise ValueError(f"{label_name}: {err}") from None
    pred_classes = probs.argmax(0)
    pred_instances = instances_from_prediction(probs, **instance_kwargs)
    scores: dict[str, float] = {**_dice_iou(pred_classes, truth_classes, num_classes)}
    scores["pixel_error"] = pixel_error(pred_classes, truth_classes)
    scores["rand_error"] = rand_error(pred_classes > 0, truth_classes > 0)
    scores["instance_rand_error"] = rand_error_instances(pred_instances, truth_instances)
    scores.update(instance_scores(pred_instances, truth_instances))
    if len(spatial) == 2 and num_classes == 2 and (truth_classes > 0).any():
        isbi = isbi_scores(np.clip(probs[1], 0.0, 1.0), truth_classes > 0)
        scores.update({("isbi_pixel_error" if k == "pixel_error" else k): v for k, v in isbi.items()})
    return scores


def load_label(path: str | Path) -> np.ndarray:
    """A label file or DICOM label series as a spatial array in the loader's axis order (as the images)."""
    label = convert_to_numpy(LoadImageOrSeriesd(keys="label", label_keys="label")({"label": str(path)})["label"])
    return label[0] if label.ndim > 2 and label.shape[0] == 1 else label


def evaluate_folder(
    bundle_dir: str | Path,
    checkpoint: str | Path,
    images_dir: str | Path,
    labels_dir: str | Path,
    output_dir: str | Path,
    label_rule: str | LabelRule = LabelRule.INSTANCES,
    flip_axes: Sequence[int] = (),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluates ``checkpoint`` (with ``bundle_dir``'s inference pipeline) on every image/label pair; writes
    ``metrics.json`` and ``metrics.csv`` to ``output_dir`` and returns ``{"cases": [...], "mean": {...}}``.

    Raises:
        ValueError: a label's shape differs from its image's, or its values do not fit ``label_rule`` and the
            number of classes (the message names the file and the fix).
    """
    rule = look_up(label_rule, LabelRule, "label_rule")
    pairs = pair_cases(images_dir, labels_dir)
    predictor = Predictor(bundle_dir, checkpoint, overrides, flip_axes)
    cases: list[dict[str, Any]] = []
    for i, pair in enumerate(pairs, start=1):
        label, probs = load_label(pair["label"]), predictor(pair["image"])
        scores = score_case(
            probs,
            label,
            rule,
            predictor.num_classes,
            predictor.instance_kwargs,
            f"label {pair['label']}",
            f"its image {pair['image']}",
        )
        cases.append({"image": pair["image"], "label": pair["label"], **scores})
        logger.info("evaluated %d/%d: %s", i, len(pairs), Path(pair["image"]).name)
    keys = list(dict.fromkeys(k for c in cases for k in c if k not in ("image", "label")))
    mean: dict[str, float] = {}
    for k in keys:
        values = [float(c[k]) for c in cases if k in c and not math.isnan(float(c[k]))]
        mean[k] = float(np.mean(values)) if values else float("nan")
    result = {
        "bundle": str(bundle_dir),
        "checkpoint": str(checkpoint),
        "label_rule": str(rule),
        "flip_axes": list(flip_axes),
        "instances": predictor.instance_kwargs,
        "cases": cases,
        "mean": mean,
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", result, indent=2)
    rows: list[list[Any]] = [["image", *keys]]
    rows += [[Path(c["image"]).name, *(c.get(k, "") for k in keys)] for c in cases]
    rows.append(["mean", *(mean[k] for k in keys)])
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    atomic_write_text(out / "metrics.csv", buffer.getvalue())
    return result


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the main scores per image and their mean."""
    keys = [k for k in SHOWN if k in result["mean"]]
    header = ["image", *keys]
    rows = [[Path(c["image"]).name, *(f"{c[k]:.4f}" if k in c else "" for k in keys)] for c in result["cases"]]
    rows.append(["mean", *(f"{result['mean'][k]:.4f}" for k in keys)])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) for r in [header, *rows])
