"""Data pipeline benchmark: writes benchmarks/results/data.json and data.md.

- weight map (paper eq. 2) on the 520x696 DSB 2018 images (about 300-370 nuclei) and on a 3D case,
  against the brute-force approach (one full distance transform per object) on the same input;
- DICOM series loading (medunet's reader) against plain SimpleITK ImageSeriesReader on the TCIA series,
  as a time ratio measured in the same run.

Usage: ``python benchmarks/data.py [--repeats N]``. Needs ../shared/data (or $MEDUNET_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage

from medunet.data.datasets import dataset_root
from medunet.data.synthetic import synthetic_cells
from medunet.io import load_image
from medunet.transforms.functional import separate_touching, unet_weight_map

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def brute_force_weight_map(instances: np.ndarray) -> np.ndarray:
    labels = [i for i in np.unique(instances) if i > 0]
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    for i in labels:
        d = ndimage.distance_transform_edt(instances != i)
        d2 = np.where(d < d1, d1, np.minimum(d2, d))
        d1 = np.minimum(d1, d)
    return 10.0 * np.exp(-((d1 + d2) ** 2) / 50.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = dataset_root()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}",
        "repeats": args.repeats,
        "weight_map": [],
        "dicom": [],
    }

    manifest = (
        json.loads((root / "dsb2018_nuclei" / "manifest.json").read_text())
        if (root / "dsb2018_nuclei").exists()
        else None
    )
    cases: list[tuple[str, np.ndarray]] = []
    if manifest is not None:
        for path in sorted((root / "dsb2018_nuclei" / "labels").glob("*.png")):
            labels = np.asarray(Image.open(path)).astype(np.int64)
            if labels.shape == (520, 696):
                cases.append((f"dsb2018 {path.stem} 520x696", labels))
    _, blobs = synthetic_cells((96, 128, 128), radius=(5.0, 10.0), seed=0)
    cases.append(("synthetic 3D 96x128x128", blobs))
    for name, labels in cases:
        n = int(len(np.unique(labels)) - 1)
        fast = best_of(lambda labels=labels: unet_weight_map(labels), args.repeats)
        carved = separate_touching(labels)
        brute = best_of(lambda carved=carved: brute_force_weight_map(carved), 1)
        results["weight_map"].append(
            {
                "case": name,
                "objects": n,
                "seconds": round(fast, 4),
                "brute_force_seconds": round(brute, 3),
                "speedup": round(brute / fast, 1),
            }
        )

    tcia = root / "tcia_pgbm001_dicom"
    for series in ("T1post", "FLAIRreg", "MaskTumor"):
        if not (tcia / series).exists():
            continue

        def simpleitk(folder: Path = tcia / series) -> None:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
            reader.Execute()

        ours = best_of(lambda folder=tcia / series: load_image(folder), args.repeats)
        ref = best_of(simpleitk, args.repeats)
        results["dicom"].append(
            {
                "series": series,
                "medunet_seconds": round(ours, 4),
                "simpleitk_seconds": round(ref, 4),
                "ratio": round(ours / ref, 2),
            }
        )

    lines = [
        "# Data pipeline benchmark",
        "",
        f"Repeats: {args.repeats} (best time).",
        "",
        "| weight map case | objects | seconds | brute force (s) | speed-up |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['objects']} | {r['seconds']:.3f} | {r['brute_force_seconds']:.2f} | {r['speedup']:.0f}x |"
        for r in results["weight_map"]
    ]
    lines += ["", "| DICOM series | medunet (s) | SimpleITK (s) | ratio |", "|---|---|---|---|"]
    lines += [
        f"| {r['series']} | {r['medunet_seconds']:.3f} | {r['simpleitk_seconds']:.3f} | {r['ratio']:.2f} |"
        for r in results["dicom"]
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "data.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
