"""The tile cost model against measured memory: writes benchmarks/results/cost_model.json and cost_model.md
(``--device cuda``: cost_model_cuda.*).

For 2D and 3D networks and several tile sizes, one inference pass runs as the overlap-tile inferer runs it
(eval mode, inference mode, channels-last network and tile). On the CPU each row runs in a fresh process after
a warm-up pass on the smallest tile (so that code loaded at the first call stays out of the number); the peak
resident set is reset after it (Linux ``clear_refs``) and the measured peak is its growth over the resident size
just before the pass. On CUDA the rows run in
this process; the peak is ``torch.cuda.max_memory_allocated`` over what was allocated before the pass (cuDNN's
workspaces included). ``TileCostModel.peak_bytes`` is what the tile planner compares with the memory budget, so
estimate / measured says how safe (> 1) or how tight (< 1) the planner is; the goal is within 15 %.

Usage: ``python benchmarks/cost_model.py [--device cpu|cuda] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"

# (name, spatial dims, features, input tiles); the first two are the inference benchmark's networks. The 3D paper
# network (32-256 features) runs on CUDA only: one pass over a 132x132x116 tile takes minutes on 2 CPU cores.
CASES: list[tuple[str, int, tuple[int, ...], list[tuple[int, ...]]]] = [
    ("2d-16", 2, (16, 32, 64, 128, 256), [(284, 284), (444, 444), (604, 700), (796, 796), (1244, 1244)]),
    ("3d-8", 3, (8, 16, 32, 64), [(92, 92, 92), (156, 156, 156), (156, 284, 188), (284, 284, 188)]),
    ("2d-paper", 2, (64, 128, 256, 512, 1024), [(572, 572), (1052, 1052)]),
]
CUDA_CASES = [
    *CASES[:2],
    ("3d-8", 3, (8, 16, 32, 64), [(412, 412, 316)]),
    CASES[2],
    ("3d-paper", 3, (32, 64, 128, 256), [(132, 132, 116), (196, 196, 180)]),
]
QUICK_CASES = [("2d-16", 2, (16, 32, 64, 128, 256), [(284, 284)]), ("3d-8", 3, (8, 16, 32, 64), [(92, 92, 92)])]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _reset_peak() -> None:
    """Resets this process's peak resident set (Linux: writing 5 to clear_refs), so that the warm-up pass's peak
    does not hide a smaller pass's."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_resident_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _pass(dims: int, features: tuple[int, ...], tile: tuple[int, ...], dtype: str, device: str) -> int:
    """Peak memory of one pass in this process (the CPU: call it in a fresh process)."""
    import gc

    from medunet.inference import to_channels_last
    from medunet.networks import ValidUNet

    torch.manual_seed(0)
    kind = getattr(torch, dtype)
    net = to_channels_last(ValidUNet(dims, 1, 2, features=features).eval().to(device))
    smallest = net.geometry.min_input_shape
    with torch.inference_mode(), torch.autocast(device, dtype=kind, enabled=dtype != "float32"):
        net(to_channels_last(torch.randn(1, 1, *smallest, device=device)))  # warm-up
        x = to_channels_last(torch.randn(1, 1, *tile, device=device))
        gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            net(x)
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        _reset_peak()
        before = _resident_bytes()
        net(x)
        return _peak_resident_bytes() - before


def _measure(dims: int, features: tuple[int, ...], tile: tuple[int, ...], dtype: str, queue: Any) -> None:
    torch.set_num_threads(2)
    queue.put(_pass(dims, features, tile, dtype, "cpu"))


def measure(
    dims: int,
    features: tuple[int, ...],
    tile: tuple[int, ...],
    dtype: str = "float32",
    device: str = "cpu",
    exact_allocations: bool = True,
) -> int:
    """Peak memory of one pass. On the CPU with ``exact_allocations`` the measuring process's malloc maps every
    block of 128 KiB or more on its own and unmaps it when freed (a fixed mmap threshold), so the resident set
    follows the live tensors; without it, glibc's default keeps freed blocks for reuse and the peak resident set
    also holds that fragmentation (reported beside it)."""
    if device == "cuda":
        return _pass(dims, features, tile, dtype, device)
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if exact_allocations:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)  # read by the spawned process's malloc at start
    else:
        os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
    try:
        return _spawned(dims, features, tile, dtype)
    finally:
        if saved is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved


def _spawned(dims: int, features: tuple[int, ...], tile: tuple[int, ...], dtype: str) -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(dims, features, tile, dtype, queue))
    proc.start()
    result = int(queue.get())
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"measuring {dims}D {tile} {dtype} failed with exit code {proc.exitcode}")
    return result


def run(quick: bool, device: str) -> dict[str, Any]:
    from medunet.inference import TileCostModel, cpu_has_native_bf16
    from medunet.networks import ValidUNet

    half = ["float16", "bfloat16"] if device == "cuda" else ["bfloat16"] if cpu_has_native_bf16() else []
    rows = []
    for name, dims, features, tiles in QUICK_CASES if quick else CUDA_CASES if device == "cuda" else CASES:
        net = ValidUNet(dims, 1, 2, features=features)
        for i, tile in enumerate(tiles):
            # half precision on the first two tiles of each network (where the device runs it natively)
            for dtype in ["float32", *half] if i < 2 else ["float32"]:
                cost = TileCostModel.for_network(net, getattr(torch, dtype), device=device)
                estimate = cost.peak_bytes(tile)
                measured = measure(dims, features, tile, dtype, device)
                default_malloc = measure(dims, features, tile, dtype, device, False) if device == "cpu" else None
                rows.append(
                    {
                        "case": name,
                        "tile": list(tile),
                        "dtype": dtype,
                        "estimate_mib": round(estimate / 2**20, 1),
                        "measured_mib": round(measured / 2**20, 1),
                        "estimate_over_measured": round(estimate / measured, 3),
                        "default_malloc_mib": None if default_malloc is None else round(default_malloc / 2**20, 1),
                    }
                )
                print(rows[-1], flush=True)
    summary: dict[str, Any] = {}
    for dims in (2, 3):
        for dtype in ("float32", *half):
            ratios = [r["estimate_over_measured"] for r in rows if len(r["tile"]) == dims and r["dtype"] == dtype]
            if ratios:
                summary[f"{dims}d_{dtype}"] = {"min": min(ratios), "max": max(ratios)}
    return {
        "device": device,
        "machine": torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.machine()}, {mp.cpu_count()} cores",
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
        f"Device: {results['machine']} ({results.get('device', 'cpu')}); torch {results['torch']}, "
        f"{results['threads']} CPU threads; channels-last network and tile, inference mode, after a warm-up pass. "
        + (
            "Measured: `torch.cuda.max_memory_allocated` over what was allocated before the pass."
            if results.get("device") == "cuda"
            else "Measured: growth of the peak resident set over the resident size before the pass, one fresh "
            "process per row, its malloc mapping every block of 128 KiB or more on its own (a fixed mmap threshold: "
            "the resident set follows the live tensors). The last column is the same pass under glibc's default "
            "malloc, whose freed blocks stay resident for reuse (fragmentation on top of the live tensors)."
        )
        + " Estimate: `TileCostModel.peak_bytes` (what the tile planner compares with the budget); goal: within "
        "15 % of the measured peak.",
        "",
        "| network | input tile | dtype | estimate (MiB) | measured (MiB) | estimate / measured | default malloc (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['case']} | {'x'.join(map(str, r['tile']))} | {r['dtype']} | {r['estimate_mib']:.1f}"
            f" | {r['measured_mib']:.1f} | {r['estimate_over_measured']:.2f} | "
            + ("" if r.get("default_malloc_mib") is None else f"{r['default_malloc_mib']:.1f}")
            + " |"
        )
    lines += ["", "Range of estimate / measured:", ""]
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
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    name = ("cost_model_quick" if args.quick else "cost_model") + ("_cuda" if args.device == "cuda" else "")
    if args.render:
        saved = json.loads((RESULTS / f"{name}.json").read_text())
        (RESULTS / f"{name}.md").write_text(markdown(saved))
        print(markdown(saved))
        return
    results = run(args.quick, args.device)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
