"""A minutes-long end-to-end run on generated data: train a small valid-convolution U-Net, then segment.

This is the README's main job until the training bundles exist. Everything is generated from a seed:
images of touching cells whose borders the network must learn to separate (the U-Net paper's task).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from medunet.data.synthetic import synthetic_cells
from medunet.inference import OverlapTileInferer
from medunet.networks import ValidUNet

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


def _interior_labels(instances: np.ndarray) -> np.ndarray:
    """1 inside objects, 0 on background and on every object border (so touching cells separate)."""
    footprint = ndimage.generate_binary_structure(instances.ndim, 1)
    border = ndimage.grey_dilation(instances, footprint=footprint) != ndimage.grey_erosion(
        instances, footprint=footprint
    )
    return ((instances > 0) & ~border).astype(np.int64)


def _random_tile(
    image: np.ndarray, labels: np.ndarray, net: ValidUNet, tile: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A valid input tile (mirror-padded image) and the label crop its output covers."""
    margin = net.geometry.margin
    out = net.output_shape(tile)
    padded = np.pad(image, [(m, m) for m in margin], mode="symmetric")
    starts = [int(rng.integers(0, s - o + 1)) for s, o in zip(labels.shape, out)]
    x = padded[tuple(slice(s, s + t) for s, t in zip(starts, tile))]
    y = labels[tuple(slice(s, s + o) for s, o in zip(starts, out))]
    return x, y


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    denom = pred.sum() + truth.sum()
    return float(2 * np.logical_and(pred, truth).sum() / denom) if denom else 1.0


def _save_png(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def run_demo(
    output_dir: str | Path = "outputs/demo",
    iterations: int = 300,
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Trains a 4-level ValidUNet on generated cells and segments a larger generated image.

    Args:
        output_dir: where the checkpoint, the PNGs and ``summary.json`` go (created; existing files of the
            same names are replaced, nothing else is touched).
        iterations: training iterations (batch of 4 tiles each).
        seed: seed of the data, the initialisation and the tile sampling.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.

    Returns:
        The summary written to ``summary.json`` (Dice of the cell interiors, objects found, timings).
    """
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    train = [synthetic_cells((256, 256), seed=seed * 100 + i) for i in range(4)]
    train_labels = [_interior_labels(inst) for _, inst in train]
    net = ValidUNet(2, 1, 2, features=(16, 32, 64, 128), dropout=0.1).to(dev)
    tile = net.input_shape_for((96, 96))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    # Borders are thin: weight the interior/background classes by inverse frequency.
    fg = float(np.mean([lab.mean() for lab in train_labels]))
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([0.5 / (1 - fg), 0.5 / fg], device=dev))

    start = time.perf_counter()
    net.train()
    losses = []
    for it in range(iterations):
        pairs = [_random_tile(train[k][0], train_labels[k], net, tile, rng) for k in rng.integers(0, 4, size=4)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None]).to(dev)
        y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(dev)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if (it + 1) % 50 == 0:
            logger.info("iteration %d/%d: loss %.4f", it + 1, iterations, np.mean(losses[-50:]))
    train_time = time.perf_counter() - start
    torch.save(net.state_dict(), out_dir / "model.pt")

    image, instances = synthetic_cells((400, 520), seed=seed * 100 + 99)
    truth = _interior_labels(instances)
    net.eval()
    inferer = OverlapTileInferer(roi_size=tile, sw_batch_size=4, flip_axes=(0, 1), output="probabilities")
    start = time.perf_counter()
    probs = inferer(torch.from_numpy(image)[None, None].to(dev), net)
    infer_time = time.perf_counter() - start
    pred = (probs[0, 1] > 0.5).cpu().numpy()
    found = int(ndimage.label(pred)[1])

    gray = np.clip(image * 255, 0, 255)
    overlay = np.stack([gray, gray, gray], axis=-1)
    overlay[pred] = 0.6 * overlay[pred] + 0.4 * np.array([0, 200, 0])
    _save_png(out_dir / "image.png", np.stack([gray] * 3, axis=-1))
    _save_png(out_dir / "prediction.png", np.stack([pred * 255] * 3, axis=-1))
    _save_png(out_dir / "overlay.png", overlay)
    summary = {
        "device": str(dev),
        "iterations": iterations,
        "train_seconds": round(train_time, 2),
        "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
        "inference_seconds": round(infer_time, 2),
        "input_tile": list(tile),
        "image_shape": list(image.shape),
        "dice_interior": round(_dice(pred, truth.astype(bool)), 4),
        "objects_true": int(instances.max()),
        "objects_found": found,
        "outputs": sorted(p.name for p in out_dir.iterdir()),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
