"""The tile cost model against measured memory: writes benchmarks/results/cost_model.json and cost_model.md.

For 2D and 3D networks and several tile sizes, one inference pass runs in a fresh process (so no earlier
allocation hides the peak); the measured peak is the growth of the peak resident set size over the resident
size just before the pass. ``TileCostModel.peak_bytes`` is what the tile planner compares with the memory
budget, so the ratio estimate / measured says how safe (> 1) or how tight (< 1) the planner is.

The first tile of the small 2D network also runs with the network and input in bfloat16 on the CPU, to show whether
2 bytes per value (what the model assumes under AMP, which medunet enables on CUDA only) holds there.

Usage: ``python benchmarks/cost_model.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"

# (name, spatial dims, features, input tiles); the first two are the inference benchmark's networks. The 3D paper
# network (32-256 features) is left out: one pass over a 132x132x116 tile takes minutes on 2 CPU cores.
CASES: list[tuple[str, int, tuple[int, ...], list[tuple[int, ...]]]] = [
    ("2d-16", 2, (16, 32, 64, 128, 256), [(284, 284), (444, 444), (604, 700), (796, 796)]),
    ("3d-8", 3, (8, 16, 32, 64), [(92, 92, 92), (156, 156, 156), (156, 284, 188), (284, 284, 188)]),
    ("2d-paper", 2, (64, 128, 256, 512, 1024), [(572, 572)]),
]
QUICK_CASES = [("2d-16", 2, (16, 32, 64, 128, 256), [(284, 284)]), ("3d-8", 3, (8, 16, 32, 64), [(92, 92, 92)])]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _measure(dims: int, features: tuple[int, ...], tile: tuple[int, ...], dtype: str, queue: Any) -> None:
    """One pass in this fresh process: the growth of the peak resident set over the resident size before it."""
    import gc

    torch.set_num_threads(2)
    from medunet.networks import ValidUNet

    torch.manual_seed(0)
    kind = getattr(torch, dtype)
    net = ValidUNet(dims, 1, 2, features=features).eval().to(kind)
    x = torch.randn(1, 1, *tile).to(kind)
    gc.collect()
    before = _resident_bytes()
    with torch.inference_mode():
        net(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    queue.put(peak - before)


def measure(dims: int, features: tuple[int, ...], tile: tuple[int, ...], dtype: str = "float32") -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(dims, features, tile, dtype, queue))
    proc.start()
    result = int(queue.get())
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"measuring {dims}D {tile} {dtype} failed with exit code {proc.exitcode}")
    return result


def run(quick: bool) -> dict[str, Any]:
    from medunet.inference import TileCostModel
    from medunet.networks import ValidUNet

    rows = []
    for name, dims, features, tiles in QUICK_CASES if quick else CASES:
        net = ValidUNet(dims, 1, 2, features=features)
        for i, tile in enumerate(tiles):
            # bfloat16 once, on the smallest 2D network: bfloat16 convolutions of the wider networks take many
            # minutes on this CPU (a slow fallback path)
            for dtype in ("float32", "bfloat16") if i == 0 and name == "2d-16" else ("float32",):
                cost = TileCostModel.for_network(net, getattr(torch, dtype))
                estimate = cost.peak_bytes(tile)
                measured = measure(dims, features, tile, dtype)
                rows.append(
                    {
                        "case": name,
                        "tile": list(tile),
                        "dtype": dtype,
                        "estimate_mib": round(estimate / 2**20, 1),
                        "measured_mib": round(measured / 2**20, 1),
                        "estimate_over_measured": round(estimate / measured, 3),
                    }
                )
                print(rows[-1], flush=True)
    summary: dict[str, Any] = {}
    for dims in (2, 3):
        ratios = [r["estimate_over_measured"] for r in rows if len(r["tile"]) == dims and r["dtype"] == "float32"]
        if ratios:
            summary[f"{dims}d_float32"] = {"min": min(ratios), "max": max(ratios)}
    return {
        "machine": f"{platform.machine()}, {mp.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": 2,
        "quick": quick,
        "rows": rows,
        "summary": summary,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Tile cost model: estimated vs measured peak memory of one pass",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}, {results['threads']} threads, CPU. "
        "Measured: growth of the peak resident set over the resident size before the pass, one fresh process per "
        "row. Estimate: `TileCostModel.peak_bytes` (what the tile planner compares with the budget).",
        "",
        "| network | input tile | dtype | estimate (MiB) | measured (MiB) | estimate / measured |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['case']} | {'x'.join(map(str, r['tile']))} | {r['dtype']} | {r['estimate_mib']:.1f}"
            f" | {r['measured_mib']:.1f} | {r['estimate_over_measured']:.2f} |"
        )
    lines += ["", "Range of estimate / measured in float32:", ""]
    for key, value in results["summary"].items():
        lines.append(f"- {key}: {value['min']:.2f} to {value['max']:.2f}")
    fp32 = [r for r in results["rows"] if r["dtype"] == "float32"]
    under = [r for r in fp32 if r["estimate_over_measured"] < 1]
    lines += [
        "",
        f"The estimate is at or above the measured peak in {len(fp32) - len(under)} of {len(fp32)} float32 rows; "
        + (
            "below it in "
            + ", ".join(
                f"{r['case']} {'x'.join(map(str, r['tile']))} (by {100 * (1 / r['estimate_over_measured'] - 1):.0f} %)"
                for r in under
            )
            if under
            else "never below it"
        )
        + ". A planner budget should keep that margin. The peak of one tile size varies between runs with the "
        "allocator's state, so a single row is one sample.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small tiles (a smoke run, not the reported numbers)")
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the saved .json, measuring nothing")
    args = parser.parse_args()
    if args.render:
        name = "cost_model_quick" if args.quick else "cost_model"
        saved = json.loads((RESULTS / f"{name}.json").read_text())
        (RESULTS / f"{name}.md").write_text(markdown(saved))
        print(markdown(saved))
        return
    results = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "cost_model_quick" if args.quick else "cost_model"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
