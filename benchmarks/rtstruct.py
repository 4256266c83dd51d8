"""RTSTRUCT contours of a fragmented segmentation, unbounded (rt-utils) and bounded (medunet.io.rtstruct): writes
benchmarks/results/rtstruct.json and rtstruct.md.

The case: the 512x512x24 post-contrast T1 series of TCIA PGBM-006 (``../shared/data/tcia_pgbm_tumor``, 0.43 mm
pixels, 6.5 mm slices), segmented by the unet3d bundle's network (32-256 features, batch norm) with random weights
(seed 0) through the overlap-tile inferer after the ``mr`` intensity preset: what a model meeting a scanner it does
not know gives, a speckle of fragments. Three label volumes on that series' grid:

1. ``fragmented``: that segmentation;
2. ``smooth``: two smooth objects (an ellipsoid lesion and a rod: ``medunet.data.synthetic.ellipsoid_labels``);
3. ``smooth + fragments``: the smooth objects over the fragmented speckle (a good segmentation with noise);
4. ``blobs``: smoothed noise thresholded (seed 0) into tens of thousands of blobs larger than the minimum area, a
   segmentation too fragmented for a contour set (the bound).

Each is written twice, in one run: ``before``, as medunet wrote RTSTRUCTs until now (rt-utils ``RTStruct.add_roi``:
every connected component, OpenCV's CHAIN_APPROX_SIMPLE, no bound), and ``after``, by ``write_rtstruct_for`` with
its default limits. Reported: file size, seconds to write, contours, and the read-back Dice
(``read_rtstruct_mask``: contours filled on the series' grid with medunet's geometry) against the label mask and,
where there are smooth objects, against them. Usage: ``python benchmarks/rtstruct.py [--skip-before-fragmented]``
(the unbounded write of the fragmented case takes minutes and hundreds of MB).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SERIES = "tcia_pgbm_tumor/PGBM-006/1996-12-10/T1post"


def data_root() -> Path:
    return Path(os.environ.get("MEDUNET_DATA_DIR", REPO.parent / "shared" / "data"))


def fragmented_labels(image: Any) -> np.ndarray:
    """The untrained unet3d network's labels of the image (seed 0), on its grid ``(x, y, z)``."""
    from medunet.inference import OverlapTileInferer
    from medunet.networks import ValidUNet
    from medunet.transforms.intensity import intensity_preset

    torch.manual_seed(0)
    net = ValidUNet(spatial_dims=3, features=[32, 64, 128, 256], norm="batch").eval()
    x = torch.as_tensor(np.asarray(intensity_preset("mr")(image)))[None].float()
    with torch.inference_mode():
        scores = OverlapTileInferer(output="probabilities")(x, net)
    return scores[0].argmax(0).numpy().astype(np.uint8)


def blobs(shape: tuple[int, int, int]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(0).normal(size=shape), sigma=(3, 3, 0))
    return (noise > np.quantile(noise, 0.85)).astype(np.uint8)


def unbounded(labels: np.ndarray, headers: list[Any], path: Path) -> None:
    """The RTSTRUCT as medunet wrote it before its contours were bounded: rt-utils traces every component."""
    from pydicom.valuerep import format_number_as_ds
    from rt_utils import ds_helper
    from rt_utils.rtstruct import RTStruct

    series = [copy.copy(header) for header in headers]
    for header in series:  # rt-utils swaps the two pixel spacings (see medunet.io.rtstruct)
        header.PixelSpacing = list(reversed([float(v) for v in header.PixelSpacing]))
    structure = RTStruct(series, ds_helper.create_rtstruct_dataset(series))
    structure.add_roi(mask=np.ascontiguousarray((labels > 0).transpose(1, 0, 2)), name="segment", use_pin_hole=False)
    for roi in structure.ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            contour.ContourData = [format_number_as_ds(float(v)) for v in contour.ContourData]
    structure.ds.save_as(path)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return float(2 * (a & b).sum() / total) if total else 1.0


def measure(name: str, labels: np.ndarray, smooth: np.ndarray | None, image: Any, headers: list[Any],
            folder: Path, skip_before: bool) -> dict[str, Any]:  # fmt: skip
    import pydicom

    from medunet.io.dicom_derived import SegmentSpec
    from medunet.io.rtstruct import read_rtstruct_mask, write_rtstruct_for

    shape, affine = labels.shape, np.asarray(image.affine)
    mask = labels > 0
    result: dict[str, Any] = {"case": name, "foreground_voxels": int(mask.sum())}
    for stage in ("before", "after"):
        path = folder / f"{name.replace(' ', '_').replace('+', 'and')}_{stage}.dcm"
        if stage == "before" and skip_before:
            result[stage] = {"skipped": True}
            continue
        start = time.perf_counter()
        if stage == "before":
            unbounded(labels, headers, path)
            written: Path | None = path
        else:
            written = write_rtstruct_for(labels, image.meta, path, [SegmentSpec(1, "segment")], headers=headers)
        seconds = time.perf_counter() - start
        entry: dict[str, Any] = {"seconds": round(seconds, 2), "written": written is not None}
        if written is not None:
            ds = pydicom.dcmread(written)
            entry["bytes"] = written.stat().st_size
            entry["contours"] = sum(len(r.get("ContourSequence", [])) for r in ds.ROIContourSequence)
            start = time.perf_counter()
            back = read_rtstruct_mask(written, "segment", affine, shape)
            entry["read_back_seconds"] = round(time.perf_counter() - start, 2)
            entry["dice_vs_mask"] = round(dice(back, mask), 4)
            if smooth is not None:
                entry["dice_vs_smooth_objects"] = round(dice(back, smooth > 0), 4)
            written.unlink()
        result[stage] = entry
        print(name, stage, entry, flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# RTSTRUCT of a fragmented segmentation: unbounded (before) and bounded (after)",
        "",
        f"Series: `{SERIES}` ({report['series_shape']}), {report['machine']}. Command: `{report['command']}`.",
        f"Fragmented segmentation: {report['fragments']}. Limits after: {report['limits']}.",
        "",
        "| case | stage | written | size | seconds to write | contours | read-back Dice vs mask | vs smooth objects |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        for stage in ("before", "after"):
            e = case[stage]
            if e.get("skipped"):
                lines.append(f"| {case['case']} | {stage} | skipped | | | | | |")
                continue
            size = f"{e['bytes'] / 2**20:.2f} MiB" if "bytes" in e else "-"
            lines.append(
                f"| {case['case']} | {stage} | {'yes' if e['written'] else 'no (warning)'} | {size} | {e['seconds']} | "
                f"{e.get('contours', '-')} | {e.get('dice_vs_mask', '-')} | {e.get('dice_vs_smooth_objects', '-')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-before-fragmented", action="store_true", help="no unbounded write of the speckle")
    parser.add_argument("--labels", type=Path, help="the fragmented labels (.npy): read if present, else saved there")
    args = parser.parse_args()
    import cv2

    from medunet.data.synthetic import ellipsoid_labels
    from medunet.io import load_image
    from medunet.io.dicom_derived import source_headers
    from medunet.io.rtstruct import ContourLimits

    series = data_root() / SERIES
    if not series.is_dir():
        raise SystemExit(f"{series} is missing: the benchmark needs the TCIA PGBM series of ../shared/data")
    torch.set_num_threads(os.cpu_count() or 1)
    image = load_image(series)
    headers = source_headers(image.meta["SourceFiles"], image.meta.get("SOPInstanceUIDs"))
    start = time.perf_counter()
    if args.labels is not None and args.labels.is_file():
        fragments = np.load(args.labels)
    else:
        fragments = fragmented_labels(image)
        if args.labels is not None:
            np.save(args.labels, fragments)
    inference_seconds = time.perf_counter() - start
    components = sum(
        cv2.connectedComponents(np.ascontiguousarray(fragments[:, :, k]), connectivity=8)[0] - 1
        for k in range(fragments.shape[2])
    )
    smooth = (ellipsoid_labels(fragments.shape) > 0).astype(np.uint8)
    report: dict[str, Any] = {
        "command": "python benchmarks/rtstruct.py",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "series_shape": "x".join(map(str, fragments.shape)),
        "fragments": f"{int(fragments.sum())} foreground voxels ({100 * fragments.mean():.1f} %) in {components} "
        f"components (8-connected, per slice); network inference {inference_seconds:.0f} s"
        + (f" (read from {args.labels.name})" if args.labels is not None and inference_seconds < 10 else ""),
        "limits": str(ContourLimits()),
        "cases": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, labels, objects, skip in (
            ("smooth", smooth, smooth, False),
            ("smooth + fragments", np.maximum(smooth, fragments), smooth, args.skip_before_fragmented),
            ("fragmented", fragments, None, args.skip_before_fragmented),
            ("blobs", blobs(fragments.shape), None, args.skip_before_fragmented),
        ):
            report["cases"].append(measure(name, labels, objects, image, headers, Path(tmp), skip))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rtstruct.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "rtstruct.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
