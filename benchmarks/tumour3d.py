"""Brain tumour from DICOM (T1post + FLAIR): medunet's 3D valid U-Net beside MONAI's SegResNet (and BasicUNet),
patient-wise cross-validated, the same CPU budget per fold and model, measured in one run.

Data: ``tcia_pgbm_tumor`` (5 studies of 3 patients; :func:`medunet.data.datasets.tcia_pgbm_tumor`). Fold k
validates the k-th patient's studies and trains on the other patients' (a patient is never in training and
validation). Each study is read once with :func:`medunet.io.read_study_channels`: T1post (the reference grid) and
FLAIR resampled into its world grid (linear), the MaskTumor series as label (nearest).

What is the same for every model (only the network and each framework's own tile conventions differ):
- preprocessing, as the ``brain_tumour_mr`` bundle: MONAI's ``Spacingd`` to 1 x 1 x 6.5 mm voxels (the studies hold
  0.43 or 0.69 mm pixels and 6.5 mm slices: one scale for every study, 2-5x fewer voxels per step), then medunet's
  ``mr`` intensity preset (per sequence: clip to the 0.5 / 99.5 percentiles, z-score);
- sampling: 2 tiles per step, half of them holding tumour (medunet: ``RandValidTiled(foreground_ratio=0.5)``,
  output region plus the valid network's mirrored margin; padded networks: MONAI's ``RandCropByPosNegLabeld``
  with pos = neg = 1), random flips along each axis;
- loss Dice + cross-entropy, Adam (learning rate 1e-3, weight decay 1e-5) with a polynomial decay (power 0.9)
  over the time budget, which is wall-clock seconds of training per fold and model on this machine (data
  sampling included); no checkpoint selection (the validation patient is never looked at during training);
- inference of the whole study: medunet by exact overlap-tile (float32), padded networks by MONAI's
  ``sliding_window_inference`` (overlap 0.5, Gaussian blending); the class probabilities resampled back onto the
  study's own (T1post) grid with MONAI's ``ResampleToMatch`` (linear), argmax; scored as they are and after keeping
  the largest connected tumour component (MONAI's ``KeepLargestConnectedComponent``);
- medunet is scored twice from the same training: with the batch-norm running averages of its (foreground-
  oversampled) training tiles, and after :func:`medunet.inference.recalibrate_batch_norm` has taken them from the
  inference tiles of the fold's training studies (``medunet_bn_recalibrated``; ``--no-recalibration`` skips it);
- metrics on the study's own grid against its own mask: Dice and HD95 (mm, MONAI's ``compute_hausdorff_distance``
  with the voxel spacing) per study.

Writes ``benchmarks/results/<name>.json`` and ``.md`` (default name ``tumour3d``); predictions and models in
``outputs/tumour3d/``.

Usage: ``python benchmarks/tumour3d.py [--minutes 20] [--folds 0 1 2] [--models medunet segresnet basicunet]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import compute_hausdorff_distance
from monai.networks.nets import BasicUNet, SegResNet
from monai.transforms import KeepLargestConnectedComponent, RandCropByPosNegLabeld, ResampleToMatch, Spacingd
from monai.utils import set_determinism

from medunet.data.datasets import TUMOUR_CHANNELS, TUMOUR_MASK, tcia_pgbm_tumor
from medunet.inference import OverlapTileInferer, recalibrate_batch_norm
from medunet.inference.precision import cpu_has_native_bf16
from medunet.io import read_study_channels
from medunet.losses import WeightedCrossEntropyLoss
from medunet.networks import ValidUNet
from medunet.transforms import RandValidTiled, intensity_preset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "outputs" / "tumour3d"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipped_models import cpu_name  # noqa: E402

BATCH = 2
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-5
# medunet: the brain_tumour_mr bundle's network: 4 levels of 8-64 features, in-plane pooling only (5-6 mm slices
# against 0.4-0.7 mm pixels). On 2 AVX2 cores a training step of 2 tiles takes 2.4 s (16-128 features: 6.9 s).
MEDUNET = {"features": [8, 16, 32, 64], "pool_sizes": [[2, 2, 1]] * 3, "norm": "batch", "dropout": 0.0}
MEDUNET_OUTPUT_TILE = (60, 60, 12)  # training output region; input (148, 148, 40) with the margin
MEDUNET_INFER_TILE = (132, 132, 26)  # one tile across the 22-25 slices, 4 x 4 tiles in-plane for 512 x 512
PADDED_ROI = (128, 128, 16)  # MONAI's crop (divisible by 16 for BasicUNet's four poolings)
RECALIBRATED = "medunet_bn_recalibrated"  # medunet after recalibrate_batch_norm on its training studies
SPACING = (1.0, 1.0, 6.5)  # mm, the brain_tumour_mr bundle's ``spacing``


def medunet_inferer() -> OverlapTileInferer:
    """medunet's exact overlap-tile inference of a whole study, float32: for prediction and for the batch-norm
    statistics alike, so that both see the same tiles."""
    return OverlapTileInferer(output_tile=MEDUNET_INFER_TILE)


def load_studies(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every study once: on the common grid, the normalised image (2, x, y, z) and label (1, x, y, z); on the
    study's own grid, the label, its voxel spacing (mm) and an empty image that carries the grid."""
    resample = Spacingd(["image", "label"], pixdim=SPACING, mode=("bilinear", "nearest"))
    normalise = intensity_preset("mr")
    studies = {}
    for case in cases:
        data = read_study_channels(case["image"], TUMOUR_CHANNELS, label=TUMOUR_MASK)
        assert data.label is not None
        affine = torch.as_tensor(data.affine_lps, dtype=torch.float64)
        label = torch.from_numpy(data.label[None].astype(np.int64))
        common = resample({"image": MetaTensor(torch.from_numpy(data.image), affine=affine),
                           "label": MetaTensor(label.float(), affine=affine)})  # fmt: skip
        image = torch.as_tensor(np.asarray(normalise(common["image"].as_tensor())), dtype=torch.float32)
        studies[case["study"]] = {
            "image": image,
            "label": common["label"].as_tensor().round().long(),
            "affine": common["image"].affine,
            "own_grid": MetaTensor(torch.zeros((1, *data.label.shape)), affine=affine),
            "own_label": label,
            "spacing": list(data.reference.spacing),
            "patient": case["patient"],
        }
    return studies


def make_network(kind: str) -> torch.nn.Module:
    if kind == "medunet":
        return ValidUNet(spatial_dims=3, in_channels=2, out_channels=2, **MEDUNET)
    if kind == "segresnet":  # MONAI's defaults (8 initial filters: 8-64 features, as medunet's), BraTS' dropout
        return SegResNet(spatial_dims=3, in_channels=2, out_channels=2, init_filters=8, dropout_prob=0.2)
    if kind == "basicunet":
        return BasicUNet(spatial_dims=3, in_channels=2, out_channels=2)
    raise ValueError(f"unknown model {kind!r}; medunet, segresnet or basicunet")


def sampler(kind: str, network: torch.nn.Module, seed: int) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """Draws BATCH tiles of one study, half of them holding tumour, as each framework crops."""
    if kind == "medunet":
        tiles = RandValidTiled("image", "label", network.geometry, MEDUNET_OUTPUT_TILE, num_samples=BATCH,
                               foreground_ratio=0.5)  # fmt: skip
    else:
        tiles = RandCropByPosNegLabeld(["image", "label"], "label", PADDED_ROI, pos=1, neg=1, num_samples=BATCH)
    tiles.set_random_state(seed)
    return tiles


def flip(batch: list[dict[str, Any]], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for sample in batch:
        image, label = torch.as_tensor(sample["image"]), torch.as_tensor(sample["label"])
        axes = [a + 1 for a in range(3) if rng.random() < 0.5]
        if axes:
            image, label = image.flip(axes), label.flip(axes)
        images.append(image)
        labels.append(label)
    return torch.stack(images).float(), torch.stack(labels).long()


def train(kind: str, studies: dict[str, dict[str, Any]], seconds: float, seed: int) -> dict[str, Any]:
    set_determinism(seed=seed)
    network = make_network(kind)
    draw = sampler(kind, network, seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn: Callable[..., torch.Tensor] = (
        WeightedCrossEntropyLoss(dice_weight=1.0) if kind == "medunet" else DiceCELoss(to_onehot_y=True, softmax=True)
    )
    names = sorted(studies)
    network.train()
    start, cpu_start, steps, losses = time.perf_counter(), time.process_time(), 0, []
    while (elapsed := time.perf_counter() - start) < seconds:
        for group in optimizer.param_groups:  # polynomial decay over the time budget
            group["lr"] = LEARNING_RATE * (1.0 - elapsed / seconds) ** 0.9
        study = studies[names[int(rng.integers(len(names)))]]
        x, y = flip(draw({"image": study["image"], "label": study["label"]}), rng)
        loss = loss_fn(network(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        steps += 1
    return {
        "network": network,
        "steps": steps,
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
        "parameters": sum(p.numel() for p in network.parameters()),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
    }


@torch.no_grad()
def predict(kind: str, network: torch.nn.Module, study: dict[str, Any], tile_norm: bool = False) -> torch.Tensor:
    """The tumour label on the study's own grid: probabilities on the common grid, resampled back, argmax.

    ``tile_norm``: batch norm normalises each tile by its own statistics instead of the running averages (a
    diagnostic only: the result then depends on the tiling, which breaks medunet's exact overlap-tile contract).
    """
    network.eval()
    if tile_norm:
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.train()
                module.momentum = 0.0  # the running averages stay as trained
    x = study["image"][None]
    if kind == "medunet":
        logits = medunet_inferer()(x, network)
    else:
        logits = sliding_window_inference(x, PADDED_ROI, 2, network, overlap=0.5, mode="gaussian")
    probabilities = MetaTensor(torch.softmax(torch.as_tensor(logits)[0], 0), affine=study["affine"])
    back = ResampleToMatch(mode="bilinear")(probabilities, img_dst=study["own_grid"])
    return torch.as_tensor(back).argmax(0)


def scores(prediction: torch.Tensor, label: torch.Tensor, spacing: list[float]) -> dict[str, float]:
    pred, truth = prediction.bool(), label[0].bool()
    total = int(pred.sum() + truth.sum())
    dice = 2.0 * int((pred & truth).sum()) / total if total else 1.0
    if pred.any() and truth.any():
        onehot = [torch.stack([~m, m])[None].float() for m in (pred, truth)]
        hd95 = float(compute_hausdorff_distance(onehot[0], onehot[1], percentile=95, spacing=spacing)[0, 0])
    else:
        hd95 = float("nan")  # no tumour predicted: the distance is undefined (reported as such, Dice 0)
    return {"dice": dice, "hd95_mm": hd95, "predicted_voxels": int(pred.sum()), "tumour_voxels": int(truth.sum())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per fold and model (wall clock)")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["medunet", "segresnet"],
                        choices=["medunet", "segresnet", "basicunet"])  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="tumour3d", help="benchmarks/results/NAME.{json,md}")
    parser.add_argument("--no-recalibration", action="store_true",
                        help="score medunet only with the batch-norm statistics of its training tiles")  # fmt: skip
    parser.add_argument("--tile-norm-check", action="store_true",
                        help="re-score the saved medunet models of --folds with batch norm over the study's own "
                             "statistics (whole study; each tile) beside the running averages; writes "
                             "<results>_tile_norm.md")  # fmt: skip
    args = parser.parse_args()
    if args.tile_norm_check:
        tile_norm_check(args)
        return

    everything = tcia_pgbm_tumor(fold=None)
    studies = load_studies(everything["validation"])
    runs: list[dict[str, Any]] = []
    for fold in args.folds:
        split = tcia_pgbm_tumor(fold=fold)
        training = {c["study"]: studies[c["study"]] for c in split["training"]}
        for kind in args.models:
            print(f"fold {fold} ({split['split']}): training {kind} for {args.minutes:g} min", flush=True)
            record = train(kind, training, args.minutes * 60.0, args.seed)
            network = record.pop("network")
            folder = WORK / f"fold{fold}" / kind
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(network.state_dict(), folder / "model.pt")
            runs += validate(kind, network, record, fold, split["validation"], studies, folder)
            if kind == "medunet" and not args.no_recalibration:
                # the same network with its batch-norm statistics taken from the inference tiles of its own
                # training studies (the validation patient stays unseen): medunet.inference.recalibrate_batch_norm
                start = time.perf_counter()
                images = [s["image"][None] for s in training.values()]
                calls = recalibrate_batch_norm(network, images, medunet_inferer())
                extra = {"recalibration_seconds": round(time.perf_counter() - start, 1), "recalibration_tiles": calls}
                torch.save(network.state_dict(), folder / "model_bn_recalibrated.pt")
                runs += validate(RECALIBRATED, network, record | extra, fold, split["validation"], studies, folder)
            write(args, runs)


def validate(name: str, network: torch.nn.Module, record: dict[str, Any], fold: int, cases: list[dict[str, Any]],
             studies: dict[str, dict[str, Any]], folder: Path) -> list[dict[str, Any]]:  # fmt: skip
    """Scores the network on the fold's validation studies; saves each prediction in ``folder``."""
    kind = "medunet" if name == RECALIBRATED else name
    runs = []
    for case in cases:
        study = studies[case["study"]]
        start = time.perf_counter()
        prediction = predict(kind, network, study)
        seconds = time.perf_counter() - start
        largest = KeepLargestConnectedComponent(applied_labels=[1])(prediction[None])[0]
        stem = case["study"].replace("/", "_") + ("_bn" if name == RECALIBRATED else "")
        np.savez_compressed(folder / f"{stem}.npz", prediction=prediction.numpy())
        result = {"fold": fold, "model": name, "study": case["study"], "patient": case["patient"],
                  **record, "inference_seconds": round(seconds, 1),
                  **scores(prediction, study["own_label"], study["spacing"]),
                  **{f"{k}_largest": v for k, v in scores(largest, study["own_label"], study["spacing"]).items()
                     if k in ("dice", "hd95_mm", "predicted_voxels")}}  # fmt: skip
        runs.append(result)
        print(json.dumps(result), flush=True)
    return runs


def tile_norm_check(args: argparse.Namespace) -> None:
    """Batch norm's running averages against statistics of the study itself, for the models a run saved: over the
    whole study (``recalibrate_batch_norm`` on the study alone, no label used: test-time adaptation of the
    statistics, "AdaBN"; every tile is normalised alike, so tiling stays exact) and over each tile by itself."""
    lines = [
        "# medunet's batch norm at inference: running averages vs the study's own statistics",
        "",
        f"Command: `python benchmarks/tumour3d.py {' '.join(sys.argv[1:])}` (the models of the run in outputs/tumour3d).",
        "",
        "| fold | study | running averages: Dice / marked voxels | whole-study statistics (exact): Dice / marked "
        "voxels | per-tile statistics (not exact): Dice / marked voxels | tumour voxels |",
        "|---|---|---|---|---|---|",
    ]
    for fold in args.folds:
        split = tcia_pgbm_tumor(fold=fold)
        state = torch.load(WORK / f"fold{fold}" / "medunet" / "model.pt")
        network = make_network("medunet")
        for name, study in load_studies(split["validation"]).items():
            network.load_state_dict(state)
            running = scores(predict("medunet", network, study), study["own_label"], study["spacing"])
            tiled = scores(predict("medunet", network, study, True), study["own_label"], study["spacing"])
            network.load_state_dict(state)
            recalibrate_batch_norm(network, [study["image"][None]], medunet_inferer())
            whole = scores(predict("medunet", network, study), study["own_label"], study["spacing"])
            lines.append(
                f"| {fold} | {name} | {running['dice']:.3f} / {running['predicted_voxels']} | "
                f"{whole['dice']:.3f} / {whole['predicted_voxels']} | "
                f"{tiled['dice']:.3f} / {tiled['predicted_voxels']} | {running['tumour_voxels']} |"
            )
            print(lines[-1], flush=True)
    (RESULTS / f"{args.results}_tile_norm.md").write_text("\n".join(lines) + "\n")


def summary(runs: list[dict[str, Any]], models: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for kind in models:
        mine = [r for r in runs if r["model"] == kind]
        if not mine:
            continue
        dice = [r["dice"] for r in mine]
        hd95 = [r["hd95_mm"] for r in mine if np.isfinite(r["hd95_mm"])]
        out[kind] = {
            "studies": len(mine),
            "dice_mean": float(np.mean(dice)),
            "dice_std": float(np.std(dice)),
            "dice_largest_mean": float(np.mean([r["dice_largest"] for r in mine])),
            "dice_largest_std": float(np.std([r["dice_largest"] for r in mine])),
            "hd95_mm_median": float(np.median(hd95)) if hd95 else float("nan"),
            "hd95_undefined": len(mine) - len(hd95),
            "train_cpu_minutes_per_fold": float(np.mean([r["train_cpu_seconds"] for r in mine]) / 60.0),
            "inference_seconds_mean": float(np.mean([r["inference_seconds"] for r in mine])),
        }
    return out


def write(args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    result = {
        "command": "python benchmarks/tumour3d.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "native_bfloat16": cpu_has_native_bf16(),
            "torch": torch.__version__,
        },
        "budget_minutes_per_fold_and_model": args.minutes,
        "seed": args.seed,
        "medunet": {**MEDUNET, "output_tile": MEDUNET_OUTPUT_TILE, "inference_tile": MEDUNET_INFER_TILE},
        "padded_roi": PADDED_ROI,
        "spacing_mm": SPACING,
        "summary": summary(runs, [*args.models, RECALIBRATED]),
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.results}.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# Brain tumour (T1post + FLAIR from DICOM): medunet's 3D valid U-Net beside MONAI's networks",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores "
        f"(native bfloat16: {result['machine']['native_bfloat16']}; everything float32), torch {torch.__version__}. "
        f"Budget: {args.minutes:g} min of training (wall clock) per fold and model, seed {args.seed}.",
        "Data: tcia_pgbm_tumor, 5 studies of 3 patients, 3 patient-wise folds (fold k validates patient k).",
        "",
        "| model | studies | Dice mean ± sd | Dice, largest component | HD95 median (mm) | HD95 undefined (nothing predicted) | "
        "training CPU-min per fold | inference s per study |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, s in result["summary"].items():
        lines.append(
            f"| {kind} | {s['studies']} | {s['dice_mean']:.3f} ± {s['dice_std']:.3f} | "
            f"{s['dice_largest_mean']:.3f} ± {s['dice_largest_std']:.3f} | {s['hd95_mm_median']:.1f} | "
            f"{s['hd95_undefined']} | {s['train_cpu_minutes_per_fold']:.1f} | {s['inference_seconds_mean']:.1f} |"
        )
    lines += ["", "| fold | study | model | steps | Dice | HD95 (mm) | predicted / tumour voxels | Dice, largest "
              "component | inference s |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        lines.append(
            f"| {r['fold']} | {r['study']} | {r['model']} | {r['steps']} | {r['dice']:.3f} | {r['hd95_mm']:.1f} | "
            f"{r['predicted_voxels']} / {r['tumour_voxels']} | {r['dice_largest']:.3f} | {r['inference_seconds']} |"
        )
    (RESULTS / f"{args.results}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
