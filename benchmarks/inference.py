"""Inference speed in one run: medunet's exact overlap-tile inference against MONAI's sliding window and one
whole-volume pass, in 2D and 3D, at the sizes users have. Writes ``benchmarks/results/inference.{json,md}``
(CPU) or ``inference_cuda.{json,md}`` (``--device cuda``).

Methods, on the same random image per case (ratios measured in the same run carry over, absolute times do not):

- ``medunet`` : :class:`~medunet.inference.OverlapTileInferer` with the planner's tile for the device's default
  memory budget (the whole volume when it fits), float32, channels-last (the bundles' default);
- ``medunet_tiled``: the same with a budget that forces tiling (3D: the tiled / whole ratio of the valid network);
- ``medunet_<precision>``: the ``bfloat16`` preset (CUDA, or a CPU with native bfloat16) and ``float16`` (CUDA);
- ``medunet_onnx``: the exported network through :mod:`medunet.runtime` on ONNX Runtime with ``medunet_tiled``'s
  tile (CPU, float32; skipped where onnxruntime is not installed);
- ``monai_sw0.25`` / ``monai_sw0.5``: ``monai.inferers.sliding_window_inference`` (Gaussian blending, reflect
  padding) with a same-padded twin of the network (same widths and depth), the ROI equal to ``medunet_tiled``'s
  input tile rounded to the pooling grid (never larger than the image rounded up to it), at each medunet precision:
  ``medunet_tiled_over_monai_sw*`` compares the two at the same tile size;
- ``monai_whole``: one pass of the padded twin over the whole image (reflect-padded to the grid): the padded
  network's limit.

The valid network needs a mirrored margin (2D: 92 voxels a side; 3D: 44): one pass over a 96x96x64 volume reads
188x188x156, so small volumes cost more than the padded twin's pass; the ``sweep`` cases give the ratio against
volume size and where it crosses 1.

On the CPU each method runs in a fresh process, 2 threads (peak = growth of the peak resident set, reset before the
timed passes, over the resident size then; glibc's default malloc); on CUDA in this process, after one warm-up
pass, peak = ``torch.cuda.max_memory_allocated`` over what was allocated before.

Usage: ``python benchmarks/inference.py [--device cpu|cuda] [--quick] [--cases 2d_2048 3d_ct ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
NET_2D = (16, 32, 64, 128, 256)
NET_3D = (8, 16, 32, 64)
FORCED_TILE_BUDGET = {2: 192 * 1024**2, 3: 1536 * 1024**2}  # budgets that force tiling (medunet_tiled), as before

# name: (spatial shape, features); "sweep" cases give the 3D ratio against volume size
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "2d_512": ((512, 512), NET_2D),
    "2d_2048": ((2048, 2048), NET_2D),
    "3d_sweep_64": ((64, 64, 64), NET_3D),
    "3d_sweep_96": ((96, 96, 64), NET_3D),
    "3d_sweep_128": ((128, 128, 128), NET_3D),
    "3d_sweep_192": ((192, 192, 96), NET_3D),
    "3d_mr": ((256, 256, 128), NET_3D),
    "3d_ct": ((512, 512, 300), NET_3D),
}
QUICK = {"2d_512": ((256, 256), NET_2D), "3d_sweep_64": ((48, 48, 32), NET_3D)}


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


def valid_net(dims: int, features: tuple[int, ...]) -> nn.Module:
    from medunet.networks import ValidUNet

    torch.manual_seed(0)
    return ValidUNet(dims, 1, 2, features=features, dropout=0.5).eval()


def padded_net(dims: int, features: tuple[int, ...]) -> nn.Module:
    torch.manual_seed(0)
    return SamePaddedUNet(dims, features, 2).eval()


def methods_for(device: str, onnx: bool) -> list[tuple[str, str]]:
    """(method, precision) pairs this device runs."""
    from medunet.inference import cpu_has_native_bf16

    precisions = ["float32"]
    if device == "cuda":
        precisions += ["bfloat16", "float16"]
    elif cpu_has_native_bf16():
        precisions.append("bfloat16")
    out = [("medunet", "float32"), ("medunet_tiled", "float32"), ("monai_whole", "float32")]
    for p in precisions:
        if p != "float32":
            out.append((f"medunet_{p}", p))
        out += [(f"monai_sw0.25_{p}", p), (f"monai_sw0.5_{p}", p)]
    if onnx and device == "cpu":
        out.append(("medunet_onnx", "float32"))
    return out


def padded_macs(shape: tuple[int, ...], features: tuple[int, ...], out_channels: int = 2) -> int:
    """Multiply-accumulates of one pass of the padded twin over ``shape`` rounded up to its pooling grid."""
    dims, stride = len(shape), 2 ** (len(features) - 1)
    grid = [s + (-s) % stride for s in shape]
    k = 3**dims
    total, channels = 0, 1
    for level, f in enumerate(features):
        voxels = math.prod(g // 2**level for g in grid)
        total += voxels * (channels + f) * f * k
        channels = f
    for level in reversed(range(len(features) - 1)):
        voxels, f = math.prod(g // 2**level for g in grid), features[level]
        total += voxels * features[level + 1] * f + voxels * (2 * f + f) * f * k
    return total + math.prod(grid) * features[0] * out_channels


def medunet_inferer(method: str, dims: int, precision: str) -> Any:
    from medunet.inference import OverlapTileInferer

    budget = FORCED_TILE_BUDGET[dims] if method == "medunet_tiled" else None
    return OverlapTileInferer(memory_budget=budget, precision=precision, channels_last=True)


def monai_roi(plan_tile: tuple[int, ...], shape: tuple[int, ...], stride: int) -> tuple[int, ...]:
    """medunet's input tile rounded down to the padded net's pooling grid, never beyond the image (rounded up)."""
    return tuple(min(max(stride, t // stride * stride), -(-s // stride) * stride) for t, s in zip(plan_tile, shape))


def run_method(
    method: str, precision: str, shape: tuple[int, ...], features: tuple[int, ...], device: str, repeats: int
) -> dict[str, Any]:
    """Times one method on one case in this process; returns seconds (median), the plan and the output."""
    from monai.inferers import sliding_window_inference

    from medunet.inference import precision_dtype, to_channels_last

    dims = len(shape)
    stride = 2 ** (len(features) - 1)
    dev = torch.device(device)
    image = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(1)).to(dev)
    valid = to_channels_last(valid_net(dims, features).to(dev))
    # MONAI's ROI: the tile of medunet's forced-tiling plan (the same tile size for both; with the planner's default
    # budget medunet takes the whole image where it fits, and a window of the whole image is no sliding window)
    reference_plan = medunet_inferer("medunet_tiled", dims, "float32").plan(shape, valid, dev)
    info: dict[str, Any] = {"method": method, "precision": precision}
    autocast = precision_dtype(precision, dev)

    if method.startswith("medunet_onnx"):
        from medunet.export import export_onnx
        from medunet.runtime import Pipeline

        with tempfile.TemporaryDirectory() as tmp:
            # the tile of medunet_tiled: ONNX Runtime and torch compared on the same tiles
            artefact = export_onnx(
                valid.cpu(), Path(tmp) / "model.zip", input_tile=reference_plan.input_tile, output="logits"
            )
            pipeline = Pipeline.load(artefact, threads=torch.get_num_threads())
            plan = pipeline.plan(shape)
            info["tiles"], info["input_tile"] = plan.num_tiles, list(plan.input_tile)
            array = image.cpu().numpy()

            def call() -> torch.Tensor:
                return torch.from_numpy(pipeline.logits(array[0]))[None]

            return _timed(call, info, dev, repeats)
    if method.startswith("medunet"):
        inferer = medunet_inferer(method, dims, precision)
        plan = inferer.plan(shape, valid, dev)
        info["tiles"], info["input_tile"] = plan.num_tiles, list(plan.input_tile)

        def call() -> torch.Tensor:
            return inferer(image, valid)

        return _timed(call, info, dev, repeats)
    padded = to_channels_last(padded_net(dims, features).to(dev))
    x = to_channels_last(image)
    if method == "monai_whole":
        pad = [v for s in reversed(shape) for v in (0, (-s) % stride)]
        info["input_tile"] = [s + (-s) % stride for s in shape]

        def call() -> torch.Tensor:
            with torch.inference_mode():
                out = padded(torch.nn.functional.pad(x, pad, mode="reflect"))
            return out[(slice(None), slice(None), *(slice(0, s) for s in shape))].float()

        return _timed(call, info, dev, repeats)
    overlap = 0.25 if "sw0.25" in method else 0.5
    roi = monai_roi(reference_plan.input_tile, shape, stride)
    info["input_tile"] = list(roi)

    def call() -> torch.Tensor:
        with (
            torch.inference_mode(),
            torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=autocast is not None),
        ):
            out = sliding_window_inference(x, roi, 1, padded, overlap=overlap, mode="gaussian", padding_mode="reflect")
        return out.float()  # type: ignore[union-attr]

    return _timed(call, info, dev, repeats)


def _timed(call: Any, info: dict[str, Any], dev: torch.device, repeats: int) -> dict[str, Any]:
    if dev.type == "cuda":
        call()  # warm-up: cuDNN's kernel choice and the allocator's first blocks stay out of the numbers
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as fh:  # resets the peak resident set (Linux)
            fh.write("5")
        before = _status_bytes("VmRSS")
    times, out = [], None
    for _ in range(repeats):
        del out
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = call()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else _status_bytes("VmHWM")) - before
    info["seconds"] = statistics.median(times)
    info["all_seconds"] = [round(t, 4) for t in times]
    info["peak_mib"] = round(peak / 2**20, 1)
    info["output"] = out.detach().float().cpu().numpy()  # type: ignore[union-attr]
    return info


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _child(args: tuple[Any, ...], queue: Any) -> None:
    torch.set_num_threads(2)
    try:
        queue.put(run_method(*args))
    except Exception as err:  # reported in the results, the run goes on
        queue.put({"method": args[0], "precision": args[1], "error": f"{type(err).__name__}: {err}"})


def measure(method: str, precision: str, shape: tuple[int, ...], features: tuple[int, ...], device: str,
            repeats: int) -> dict[str, Any]:  # fmt: skip
    if device == "cuda":
        try:
            return run_method(method, precision, shape, features, device, repeats)
        except Exception as err:
            torch.cuda.empty_cache()
            return {"method": method, "precision": precision, "error": f"{type(err).__name__}: {err}"}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=((method, precision, shape, features, device, repeats), queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0 and "error" not in result:
        result = {"method": method, "precision": precision, "error": f"exit code {proc.exitcode}"}
    return result


def benchmark_case(case: str, shape: tuple[int, ...], features: tuple[int, ...], device: str, repeats: int,
                   onnx: bool, whole_limit: int) -> dict[str, Any]:  # fmt: skip
    from medunet.inference import TileCostModel

    dims = len(shape)
    net = valid_net(dims, features)
    cost = TileCostModel.for_network(net)
    whole_tile = net.geometry.input_shape_for(shape)
    voxels = math.prod(shape)
    result: dict[str, Any] = {"shape": list(shape), "features": list(features), "whole_input": list(whole_tile)}
    result["valid_over_padded_flops"] = round(cost.macs(whole_tile) / padded_macs(shape, features), 3)
    outputs: dict[str, np.ndarray] = {}
    methods = {}
    for method, precision in methods_for(device, onnx):
        # the valid network's whole pass bounds the padded twin's from above
        if method == "monai_whole" and device == "cpu" and cost.peak_bytes(whole_tile) > whole_limit:
            methods[method] = {"skipped": f"the whole pass would exceed {whole_limit / 2**30:.0f} GiB (estimated)"}
            continue
        entry = measure(method, precision, shape, features, device, repeats)
        if "output" in entry:
            outputs[method] = entry.pop("output")
            entry["output_voxels_per_second"] = round(voxels / entry["seconds"], 1)
        methods[method] = entry
        print(case, method, {k: v for k, v in entry.items() if k != "all_seconds"}, flush=True)
    result["methods"] = methods
    ref = outputs.get("medunet")
    if ref is not None:
        scale = float(np.abs(ref).max())
        for name, out in outputs.items():
            if name.startswith("medunet") and name != "medunet":
                methods[name]["max_abs_diff_vs_medunet"] = float(np.abs(out - ref).max())
                methods[name]["relative_to_largest_logit"] = float(np.abs(out - ref).max() / scale)
                methods[name]["class_changed_fraction"] = float(np.mean(out.argmax(1) != ref.argmax(1)))
    speed = {k: v.get("output_voxels_per_second") for k, v in methods.items()}
    ratios: dict[str, float] = {}
    for name, value in speed.items():
        if value is None or not name.startswith("medunet"):
            continue
        precision = methods[name]["precision"]
        for overlap in ("0.25", "0.5"):
            monai = speed.get(f"monai_sw{overlap}_{precision}")
            if monai:
                ratios[f"{name}_over_monai_sw{overlap}"] = round(value / monai, 3)
        if speed.get("monai_whole") and precision == "float32":
            ratios[f"{name}_over_monai_whole"] = round(value / speed["monai_whole"], 3)
    if speed.get("medunet") and speed.get("medunet_tiled"):
        ratios["tiled_over_whole_time"] = round(speed["medunet"] / speed["medunet_tiled"], 3)
    result["ratios"] = ratios
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Inference speed ({results['device']})",
        "",
        f"Device: {results['device_name']}; torch {results['torch']}; {results['threads']} CPU threads; native "
        f"bfloat16 on this CPU: {results['cpu_native_bf16']}. Repeats: {results['repeats']} (median). Command: "
        f"`{results['command']}`. Networks: 2D features {list(NET_2D)}, 3D {list(NET_3D)}, random weights, random "
        "image (speed only). Peak: "
        + (
            "growth of the peak resident set, a fresh process per method"
            if results["device"] == "cpu"
            else "torch.cuda.max_memory_allocated"
        )
        + ".",
        "",
        "| case | method | precision | tiles (input tile) | seconds | voxels/s | peak MiB | class changed vs medunet fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, r in results["cases"].items():
        for name, m in r["methods"].items():
            if "skipped" in m or "error" in m:
                lines.append(f"| {case} | {name} | | | {m.get('skipped') or m.get('error')} | | | |")
                continue
            tile = "x".join(map(str, m.get("input_tile", [])))
            tiles = f"{m['tiles']} ({tile})" if "tiles" in m else f"({tile})"
            changed = m.get("class_changed_fraction")
            lines.append(
                f"| {case} {'x'.join(map(str, r['shape']))} | {name} | {m['precision']} | {tiles} | {m['seconds']:.3f}"
                f" | {m['output_voxels_per_second']:.3g} | {m['peak_mib']:.0f} | "
                + ("" if changed is None else f"{changed:.2e}")
                + " |"
            )
    lines += ["", "Ratios (voxels/s of medunet over the peer at the same precision; > 1: medunet faster):", ""]
    for case, r in results["cases"].items():
        ratios = dict(r["ratios"])
        speed = {k: m.get("output_voxels_per_second") for k, m in r["methods"].items()}
        if speed.get("medunet_onnx") and speed.get("medunet_tiled"):
            ratios["onnx_over_torch_same_tiles"] = round(speed["medunet_onnx"] / speed["medunet_tiled"], 3)
        text = ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
        lines.append(
            f"- {case} ({r['valid_over_padded_flops']:.2f}x the padded net's FLOPs for one whole pass): {text}"
        )
    lines += _goals(results["cases"])
    return "\n".join(lines) + "\n"


def _goals(cases: dict[str, Any]) -> list[str]:
    """The goals of this benchmark, each with what this run measured (met or missed, and by how much)."""
    checks = [
        ("2d_2048", "medunet_tiled_over_monai_sw0.5", ">=", 3.0, "2D 2048x2048: medunet >= 3x MONAI at overlap 0.5"),
        ("3d_ct", "medunet_tiled_over_monai_sw0.25", ">=", 1.0, "3D 512x512x300: medunet >= 1x MONAI at overlap 0.25"),
        ("3d_mr", "tiled_over_whole_time", "<=", 1.10, "3D 256x256x128: tiled / whole time <= 1.10 (float32)"),
    ]
    lines = ["", "Goals (same precision, this run):", ""]
    for case, key, relation, goal, text in checks:
        value = cases.get(case, {}).get("ratios", {}).get(key)
        if value is None:
            lines.append(f"- {text}: not measured in this run")
            continue
        met = value >= goal if relation == ">=" else value <= goal
        lines.append(f"- {text}: {value:.2f}, " + ("met" if met else f"missed by {abs(goal - value):.2f}"))
    whole = cases.get("2d_2048", {}).get("methods", {})
    if "monai_whole" in whole and "medunet" in whole and "monai_sw0.5_float32" in whole:
        own = whole["monai_sw0.5_float32"]["seconds"] / whole["monai_whole"]["seconds"]
        margin = whole["medunet"]["seconds"] / whole["monai_whole"]["seconds"]
        lines.append(
            f"  (bound: MONAI's overlap 0.5 costs {own:.2f}x its own whole pass and medunet's whole pass {margin:.2f}x "
            f"the padded one, so the ratio cannot pass about {own / margin:.2f}x without faster convolutions)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="two small cases (a smoke run, not reported numbers)")
    parser.add_argument("--cases", nargs="+", help=f"a subset of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per method (CPU 1, CUDA 5)")
    parser.add_argument("--no-onnx", action="store_true", help="leave ONNX Runtime out")
    parser.add_argument("--whole-limit-gib", type=float, default=12.0, help="CPU: largest whole pass to try")
    parser.add_argument("--results", default=None, help="results name (default inference / inference_cuda)")
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the saved .json, measuring nothing")
    args = parser.parse_args()
    if args.render:
        name = args.results or ("inference" if args.device == "cpu" else "inference_cuda")
        saved = json.loads((RESULTS / f"{name}.json").read_text())
        (RESULTS / f"{name}.md").write_text(markdown(saved))
        print(markdown(saved))
        return
    cases = QUICK if args.quick else {k: CASES[k] for k in (args.cases or CASES)}
    repeats = args.repeats or (5 if args.device == "cuda" else 1)
    try:
        import onnxruntime  # noqa: F401

        onnx = not args.no_onnx
    except ImportError:
        onnx = False
    from medunet.inference import cpu_has_native_bf16

    if args.device == "cuda":
        torch.set_num_threads(2)
    results: dict[str, Any] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": 2,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "repeats": repeats,
        "command": "python benchmarks/inference.py " + " ".join(a for a in __import__("sys").argv[1:]),
        "cases": {},
    }
    start = time.perf_counter()
    name = args.results or ("inference" if args.device == "cpu" else "inference_cuda") + (
        "_quick" if args.quick else ""
    )
    for case, (shape, features) in cases.items():
        results["cases"][case] = benchmark_case(
            case, shape, features, args.device, repeats, onnx, int(args.whole_limit_gib * 2**30)
        )
        results["seconds"] = round(time.perf_counter() - start, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
