"""Overlap-tile inference benchmark: writes benchmarks/results/inference.json and inference.md.

Measured in one run on one machine (ratios, not absolute times, are what carry over):

(a) tiling overhead: for a 2D image and a 3D volume under a memory budget that forces tiling, the
    planner's redundancy (FLOPs of all tiles / FLOPs of one whole-image pass, from the geometry) and
    the measured time ratio tiled / whole-image;
(b) output voxels per second of medunet's exact overlap-tile inference vs MONAI's
    ``sliding_window_inference`` (Gaussian blending, overlap 0.5 and 0.25) with a same-padded U-Net of
    identical widths and depth, on the same inputs and with the same input tile size, plus the max
    difference of each to its own whole-image pass;
(c) the peak resident memory of each run, measured in a fresh subprocess per configuration.

Usage: ``python benchmarks/inference.py [--quick] [--repeats N] [--cases 3d] [--channels-last | --bf16]``
(``--channels-last``: every method in float32 with channels-last tensors and network, results in
``inference_cl.*``; ``--bf16``: bfloat16 autocast as well, the planner counting 2 bytes a value, results in
``inference_bf16.*``; both say whether the CPU has native bfloat16).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
_MODE_ENV = "MEDUNET_BENCHMARK_MODE"  # fp32 | cl | bf16, read by the measuring processes


class SamePaddedUNet(nn.Module):
    """The ValidUNet's layers with padded convolutions: output size = input size (the comparison network)."""

    def __init__(self, spatial_dims: int, features: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        from monai.networks.layers.factories import Conv, Pool

        from medunet.networks.blocks import UpConv, ValidConvBlock, init_he_normal

        self.down = nn.ModuleList()
        ch = 1
        for f in features:
            self.down.append(ValidConvBlock(spatial_dims, ch, f, padding=1))
            ch = f
        self.pool = Pool[Pool.MAX, spatial_dims](2)
        self.up = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for level in reversed(range(len(features) - 1)):
            self.up.append(UpConv(spatial_dims, features[level + 1], features[level], (2,) * spatial_dims))
            self.up_convs.append(ValidConvBlock(spatial_dims, 2 * features[level], features[level], padding=1))
        self.head = Conv[Conv.CONV, spatial_dims](features[0], out_channels, 1)
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, convs in zip(self.up, self.up_convs):
            x = convs(torch.cat([skips.pop(), up(x)], 1))
        return self.head(x)


def _case(kind: str, quick: bool) -> dict[str, Any]:
    if kind == "2d":
        shape = (1024, 1024) if quick else (2048, 2048)
        return {"dims": 2, "shape": shape, "features": (16, 32, 64, 128, 256), "budget": 192 * 1024**2}
    shape = (96, 96, 64) if quick else (192, 192, 96)
    return {"dims": 3, "shape": shape, "features": (8, 16, 32, 64), "budget": 1536 * 1024**2}


def _build(case: dict[str, Any], padded: bool) -> nn.Module:
    from medunet.networks import ValidUNet

    torch.manual_seed(0)
    if padded:
        return SamePaddedUNet(case["dims"], case["features"], 2).eval()
    return ValidUNet(case["dims"], 1, 2, features=case["features"], dropout=0.5).eval()


def _measure(kind: str, quick: bool, method: str, repeats: int, queue: Any) -> None:
    """Runs one configuration in this (fresh) process and reports time, peak RSS and the output."""
    torch.set_num_threads(2)
    from monai.inferers import sliding_window_inference

    from medunet.inference import OverlapTileInferer, to_channels_last

    # --channels-last: channels-last tensors and network; --bf16: also bfloat16 autocast (the planner then counts
    # 2 bytes a value)
    mode = os.environ.get(_MODE_ENV, "fp32")
    fast, channels_last = mode == "bf16", mode in ("cl", "bf16")
    case = _case(kind, quick)
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(1, 1, *case["shape"], generator=gen)
    net = _build(case, padded=method.startswith("monai"))
    if channels_last:
        net, image = to_channels_last(net), to_channels_last(image)
    settings = {"amp": fast, "channels_last": channels_last}
    medunet_plan = OverlapTileInferer(memory_budget=case["budget"], **settings).plan(case["shape"], _build(case, False))
    stride = 16 if case["dims"] == 2 else 8

    def run() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            return run_fp()

    def run_fp() -> torch.Tensor:
        if method == "medunet_whole":
            return OverlapTileInferer(input_tile=(-1,) * case["dims"], **settings)(image, net)
        if method == "medunet_tiled":
            return OverlapTileInferer(memory_budget=case["budget"], **settings)(image, net)
        if method == "monai_whole":
            padded = [(-s) % stride for s in case["shape"]]
            pad = [v for p in reversed(padded) for v in (0, p)]
            with torch.inference_mode():
                out = net(torch.nn.functional.pad(image, pad, mode="reflect"))
            return out[(slice(None), slice(None), *(slice(0, s) for s in case["shape"]))]
        overlap = 0.5 if method == "monai_overlap0.5" else 0.25
        # The same input tile as medunet's plan, rounded down to the pooling grid the padded net needs.
        # Never larger than the image (rounded up to the grid): a MONAI user would not pad beyond it.
        roi = tuple(
            min(max(stride, (t // stride) * stride), -(-s // stride) * stride)
            for t, s in zip(medunet_plan.input_tile, case["shape"])
        )
        with torch.inference_mode():
            return sliding_window_inference(
                image, roi, 1, net, overlap=overlap, mode="gaussian", padding_mode="reflect"
            )  # type: ignore[return-value]

    run_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out is not None
    queue.put(
        {
            "method": method,
            "seconds": min(times),
            "all_seconds": [round(t, 3) for t in times],
            "peak_rss_mib": round(peak / 1024, 1),
            "peak_rss_increase_mib": round((peak - run_before) / 1024, 1),
            "output": out.float().numpy(),
        }
    )


def _run_isolated(kind: str, quick: bool, method: str, repeats: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, quick, method, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark run {kind}/{method} failed with exit code {proc.exitcode}")
    result["output"] = torch.from_numpy(result["output"])
    return result


def benchmark(kind: str, quick: bool, repeats: int) -> dict[str, Any]:
    from medunet.inference import OverlapTileInferer, TileCostModel

    case = _case(kind, quick)
    net = _build(case, padded=False)
    geo = net.geometry
    cost = TileCostModel.for_network(net)
    plan = OverlapTileInferer(memory_budget=case["budget"], amp=os.environ.get(_MODE_ENV) == "bf16").plan(
        case["shape"], net
    )
    whole_tile = geo.input_shape_for(case["shape"])
    flops_tile = cost.flops(plan.input_tile)
    flops_whole = cost.flops(whole_tile)
    voxels = 1
    for s in case["shape"]:
        voxels *= s

    runs = {
        m: _run_isolated(kind, quick, m, repeats)
        for m in ("medunet_whole", "medunet_tiled", "monai_whole", "monai_overlap0.5", "monai_overlap0.25")
    }
    diff_medunet = float((runs["medunet_tiled"]["output"] - runs["medunet_whole"]["output"]).abs().max())
    scale_medunet = float(runs["medunet_whole"]["output"].abs().max())
    result: dict[str, Any] = {
        "image_shape": list(case["shape"]),
        "features": list(case["features"]),
        "memory_budget_bytes": case["budget"],
        "planned_input_tile": list(plan.input_tile),
        "planned_output_tile": list(plan.output_tile),
        "tiles": plan.num_tiles,
        "tile_starts": [list(s) for s in plan.starts],
        "estimated_tile_memory_bytes": cost.peak_bytes(plan.input_tile),
        "whole_image_input": list(whole_tile),
        "redundancy_flops": round(plan.num_tiles * flops_tile / flops_whole, 4),
        "time_ratio_tiled_over_whole": round(runs["medunet_tiled"]["seconds"] / runs["medunet_whole"]["seconds"], 4),
        "max_abs_diff_tiled_vs_whole": diff_medunet,
        "max_abs_logit_whole": scale_medunet,
        "methods": {},
    }
    result["overhead_vs_redundancy"] = round(result["time_ratio_tiled_over_whole"] / result["redundancy_flops"], 4)
    for name, run in runs.items():
        entry = {k: v for k, v in run.items() if k not in ("output", "method")}
        entry["output_voxels_per_second"] = round(voxels / run["seconds"], 1)
        if name.startswith("monai_overlap"):
            entry["max_abs_diff_vs_own_whole"] = float((run["output"] - runs["monai_whole"]["output"]).abs().max())
            entry["max_abs_logit_own_whole"] = float(runs["monai_whole"]["output"].abs().max())
        result["methods"][name] = entry
    tiled = result["methods"]["medunet_tiled"]["output_voxels_per_second"]
    for overlap in ("0.5", "0.25"):
        monai = result["methods"][f"monai_overlap{overlap}"]["output_voxels_per_second"]
        result[f"speedup_vs_monai_overlap{overlap}"] = round(tiled / monai, 3)
    return result


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Overlap-tile inference benchmark",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}, {results['threads']} threads; "
        f"repeats {results['repeats']} (min time reported). Precision: {results.get('precision', 'float32')}; "
        f"native bfloat16 on this CPU: {results.get('native_bf16', 'not recorded')}.",
        "",
        "| case | budget (MiB) | tiles (input tile) | redundancy (FLOPs) | tiled/whole time | overhead | max diff tiled vs whole |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["cases"].items():
        lines.append(
            f"| {kind} {'x'.join(map(str, r['image_shape']))} | {r['memory_budget_bytes'] / 2**20:.0f}"
            f" | {r['tiles']} ({'x'.join(map(str, r['planned_input_tile']))})"
            f" | {r['redundancy_flops']:.3f} | {r['time_ratio_tiled_over_whole']:.3f} | {r['overhead_vs_redundancy']:.3f}"
            f" | {r['max_abs_diff_tiled_vs_whole']:.2e} (max logit {r['max_abs_logit_whole']:.1f}) |"
        )
    lines += [
        "",
        "| case | method | seconds | output voxels/s | peak RSS (MiB) | RSS increase (MiB) | max diff vs own whole |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["cases"].items():
        for name, m in r["methods"].items():
            diff = m.get("max_abs_diff_vs_own_whole")
            diff_text = (
                f"{diff:.2e}"
                if diff is not None
                else ("0 by construction" if name.endswith("whole") else f"{r['max_abs_diff_tiled_vs_whole']:.2e}")
            )
            lines.append(
                f"| {kind} | {name} | {m['seconds']:.2f} | {m['output_voxels_per_second']:.0f} | {m['peak_rss_mib']:.0f}"
                f" | {m['peak_rss_increase_mib']:.0f} | {diff_text} |"
            )
    lines += ["", "Speed-up of medunet (tiled, exact) over MONAI sliding_window_inference (Gaussian):", ""]
    for kind, r in results["cases"].items():
        lines.append(
            f"- {kind}: {r['speedup_vs_monai_overlap0.5']:.2f}x at overlap 0.5, "
            f"{r['speedup_vs_monai_overlap0.25']:.2f}x at overlap 0.25"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (a smoke run, not the reported numbers)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["2d", "3d"], choices=["2d", "3d"])
    mode_group = parser.add_mutually_exclusive_group()
    mode_group.add_argument("--channels-last", action="store_true", help="float32 with channels-last for every method")
    mode_group.add_argument("--bf16", action="store_true", help="bfloat16 autocast and channels-last for every method")
    args = parser.parse_args()
    mode = "bf16" if args.bf16 else "cl" if args.channels_last else "fp32"
    os.environ[_MODE_ENV] = mode  # read by the spawned measuring processes
    from medunet.inference import cpu_has_native_bf16

    results = {
        "machine": f"{platform.machine()}, {mp.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": 2,
        "repeats": args.repeats,
        "quick": args.quick,
        "precision": {"fp32": "float32", "cl": "float32, channels-last", "bf16": "bfloat16 autocast, channels-last"}[
            mode
        ],
        "native_bf16": cpu_has_native_bf16(),
        "cases": {kind: benchmark(kind, args.quick, args.repeats) for kind in args.cases},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = ("inference_quick" if args.quick else "inference") + {"fp32": "", "cl": "_cl", "bf16": "_bf16"}[mode]
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(_markdown(results))
    print(_markdown(results))


if __name__ == "__main__":
    main()
