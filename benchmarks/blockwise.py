"""Blockwise inference benchmark: writes benchmarks/results/blockwise.json and blockwise.md.

Measured in one run on one machine (ratios, not absolute times, carry over):

(a) memory flat in the volume's size: generated uint8 zarr volumes of two sizes (the larger at least 1 GiB) are
    segmented by ``run_blockwise`` on a local dask cluster of 2 worker processes; the peak resident memory of
    every process (the client with the scheduler and the nannies, and each worker: VmHWM) is compared
    with a stated budget;
(b) throughput relative to the in-memory ``OverlapTileInferer`` (same network, same tile, same torch threads,
    the same labels function after it) on a volume that fits, for 1 worker x 2 threads and 2 workers x 1 thread
    (the 1-vs-2-worker comparison), timed round-robin, the fastest of ``--repeats`` runs each;
(c) the labels of every blockwise run on the small volume equal the in-memory labels (checked, not assumed).

The network is a small 3D ValidUNet (2-4 features, two levels) with fixed random weights: the point is the
engine's overhead and memory, not the network's accuracy. Usage:
``python benchmarks/blockwise.py [--sizes 512x1024x1024 1024x1024x1024] [--budget-gib 1.5] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
FEATURES = (2, 4)
TILE = (144, 144, 144)  # output 128: the blocks (and chunks) tile 1024 exactly
CHUNKS = (128, 128, 128)


def network() -> torch.nn.Module:
    from medunet.networks import ValidUNet

    torch.manual_seed(0)
    return ValidUNet(spatial_dims=3, features=FEATURES, dropout=0.0).eval()


def generate(path: Path, shape: tuple[int, int, int]) -> float:
    """A uint8 volume of smooth blobs plus noise, written chunk by chunk (never whole in memory); returns GiB."""
    import zarr

    array = zarr.create_array(str(path), shape=shape, chunks=CHUNKS, dtype="uint8")
    rng = np.random.default_rng(0)
    for z in range(0, shape[0], CHUNKS[0]):
        for y in range(0, shape[1], CHUNKS[1]):
            for x in range(0, shape[2], CHUNKS[2]):
                zz, yy, xx = np.meshgrid(
                    *(np.arange(s, min(s + c, n)) for s, c, n in zip((z, y, x), CHUNKS, shape)), indexing="ij"
                )
                blobs = np.sin(zz / 9.0) * np.sin(yy / 7.0) * np.sin(xx / 11.0)
                noise = rng.normal(0, 0.1, blobs.shape)
                array[z : z + CHUNKS[0], y : y + CHUNKS[1], x : x + CHUNKS[2]] = np.clip(
                    (blobs + noise + 1) * 127, 0, 255
                ).astype(np.uint8)
    return float(np.prod(shape)) / 1024**3


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss``, not inherited across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def _cluster(workers: int) -> Iterator[Any]:
    """A client of a local cluster of ``workers`` processes, each having imported the blockwise module (start-up
    is not inference time); both closed on exit."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:  # fmt: skip
        client.run(lambda: __import__("medunet.apps.blockwise"))
        yield client


def blockwise_once(client: Any, source: Path, output: Path, threads: int) -> tuple[float, Any]:
    """One ``run_blockwise`` into a fresh output: (seconds, report)."""
    from medunet.apps.blockwise import BlockwiseJob, run_blockwise

    job = BlockwiseJob(input=str(source), output=str(output), input_tile=TILE, scale=1 / 255, torch_threads=threads)
    shutil.rmtree(output, ignore_errors=True)
    start = time.perf_counter()
    report = run_blockwise(job, network(), scheduler=client, progress=False)
    return time.perf_counter() - start, report


def blockwise(source: Path, output: Path, workers: int, threads: int) -> dict[str, Any]:
    """One ``run_blockwise`` on a fresh local cluster, with every worker's peak memory."""
    with _cluster(workers) as client:
        seconds, report = blockwise_once(client, source, output, threads)
        workers_rss = sorted(client.run(peak_rss_mib).values())
    return {"seconds": seconds, "blocks": report.blocks, "computed": report.computed,
            "worker_peak_rss_mib": workers_rss}  # fmt: skip


def in_memory(source: Path, threads: int) -> tuple[float, np.ndarray]:
    """The whole volume read, scaled and segmented in memory: (seconds, labels). The labels are taken with the
    same function as the blockwise runs' (``scores_to_volume``), so both do the same work after the network."""
    import zarr

    from medunet.apps.blockwise import BlockwiseJob
    from medunet.inference import scores_to_volume, to_channels_last

    torch.set_num_threads(threads)
    job = BlockwiseJob(input="", output="", input_tile=TILE, scale=1 / 255, output_mode="logits")
    start = time.perf_counter()
    data = np.asarray(zarr.open_array(str(source))[:])
    image = torch.from_numpy(job.intensity(data))[None, None]
    with torch.inference_mode():  # the blockwise job's inferer: float32, channels-last (the default)
        scores = job.inferer()(image, to_channels_last(network()))[0]
    labels = scores_to_volume(scores.as_subclass(torch.Tensor), "labels")
    return time.perf_counter() - start, labels


def throughput(small: Path, work: Path, repeats: int) -> dict[str, Any]:
    """The in-memory inferer and the two blockwise configurations, timed round-robin ``repeats`` times (so that
    load from elsewhere on the machine falls on all three alike); the fastest run of each counts."""
    import zarr

    configs = {"1x2": (1, 2), "2x1": (2, 1)}
    times: dict[str, list[float]] = {"in_memory": [], **{key: [] for key in configs}}
    equal = {key: True for key in configs}
    with contextlib.ExitStack() as stack:
        clients = {key: stack.enter_context(_cluster(workers)) for key, (workers, _) in configs.items()}
        # in its own process, so that the whole volume it holds does not count in this process's peak memory
        pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        for _ in range(repeats):
            seconds, reference = pool.submit(in_memory, small, 2).result()
            times["in_memory"].append(seconds)
            for key, (_, threads) in configs.items():
                out = work / f"small-{key}.zarr"
                seconds, _ = blockwise_once(clients[key], small, out, threads)
                times[key].append(seconds)
                equal[key] &= bool(np.array_equal(zarr.open_array(str(out / "0"))[:], reference))
                shutil.rmtree(out)
    memory_seconds = min(times["in_memory"])
    runs = {
        key: {"seconds": min(times[key]), "all_seconds": [round(t, 2) for t in times[key]],
              "labels_equal_in_memory": equal[key], "throughput_vs_in_memory": memory_seconds / min(times[key])}
        for key in configs
    }  # fmt: skip
    return {"in_memory_seconds_2_threads": memory_seconds, "in_memory_all_seconds": [round(t, 2) for t in
            times["in_memory"]], "repeats": repeats, "runs": runs}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs=2, default=["512x1024x1024", "1024x1024x1024"], help="two volume shapes")
    parser.add_argument("--small", default="256x256x256", help="the volume that fits, for the throughput ratios")
    parser.add_argument("--budget-gib", type=float, default=1.5, help="peak RSS budget per process")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin throughput runs (the fastest counts)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--workdir", help="where to write the volumes (default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.small = ["128x256x256", "256x256x256"], "128x128x128"

    work = Path(args.workdir or tempfile.mkdtemp(prefix="medunet-blockwise-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python benchmarks/blockwise.py " + ("--quick" if args.quick else f"--sizes {' '.join(args.sizes)}"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "network": f"ValidUNet 3D features {FEATURES}, fixed random weights (seed 0), tile {TILE}, float32, channels-last",
        "budget_gib_per_process": args.budget_gib,
    }
    # (b) + (c): throughput and equality on a volume that fits
    small_shape = tuple(int(s) for s in args.small.split("x"))
    small = work / "small.zarr"
    generate(small, small_shape)  # type: ignore[arg-type]
    result["throughput"] = {"volume": list(small_shape), **throughput(small, work, args.repeats)}
    # (a) memory at two sizes
    sizes = []
    for text in args.sizes:
        shape = tuple(int(s) for s in text.split("x"))
        source = work / f"volume-{text}.zarr"
        gib = generate(source, shape)  # type: ignore[arg-type]
        out = work / f"out-{text}.zarr"
        run = blockwise(source, out, 2, 1)
        run.update(shape=list(shape), input_gib=gib, voxels_per_second=float(np.prod(shape)) / run["seconds"])
        sizes.append(run)
        shutil.rmtree(out)
        shutil.rmtree(source)
    result["sizes"] = sizes
    result["client_peak_rss_mib"] = peak_rss_mib()  # the client, scheduler and nannies: one process
    every = [result["client_peak_rss_mib"], *(r for run in sizes for r in run["worker_peak_rss_mib"])]
    result["max_peak_rss_mib"] = max(every)
    result["within_budget"] = max(every) <= args.budget_gib * 1024
    shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "blockwise.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "blockwise.md").write_text(report(result))
    print(report(result))


def report(r: dict[str, Any]) -> str:
    lines = [
        "# Blockwise inference (dask.distributed, zarr)", "",
        f"Command: `{r['command']}`. Machine: {r['machine']}. Network: {r['network']}.", "",
        f"## Memory does not grow with the volume (budget {r['budget_gib_per_process']} GiB per process)", "",
        "| volume | GiB (uint8) | blocks | seconds | voxels/s | worker peak RSS (MiB) |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for run in r["sizes"]:
        rss = ", ".join(f"{v:.0f}" for v in run["worker_peak_rss_mib"])
        lines.append(
            f"| {'x'.join(map(str, run['shape']))} | {run['input_gib']:.2f} | {run['blocks']} | {run['seconds']:.0f} | "
            f"{run['voxels_per_second'] / 1e6:.2f} M | {rss} |"
        )
    lines += [
        "",
        f"Client process (client, scheduler, nannies; peak over the whole benchmark): {r['client_peak_rss_mib']:.0f} MiB. "
        f"Largest peak of any process: {r['max_peak_rss_mib']:.0f} MiB: "
        f"{'within' if r['within_budget'] else 'OVER'} the budget.",
        "",
        f"## Throughput against the in-memory inferer ({'x'.join(map(str, r['throughput']['volume']))}, same tile)",
        "",
        f"In-memory `OverlapTileInferer`, 2 torch threads: {r['throughput']['in_memory_seconds_2_threads']:.1f} s "
        f"(the fastest of {r['throughput']['repeats']}: {r['throughput']['in_memory_all_seconds']} s; each blockwise "
        "configuration likewise, the three timed round-robin; the volume is read from zarr and the labels taken with "
        "`scores_to_volume` in all).",
        "",
        "| workers x threads | seconds (fastest) | all runs | throughput / in-memory | labels equal |",
        "|---|---|---|---|---|",
    ]
    for key, run in r["throughput"]["runs"].items():
        lines.append(
            f"| {key} | {run['seconds']:.1f} | {run['all_seconds']} | {run['throughput_vs_in_memory']:.2f} | "
            f"{run['labels_equal_in_memory']} |"
        )
    best = max(run["throughput_vs_in_memory"] for run in r["throughput"]["runs"].values())
    below = {key: run["throughput_vs_in_memory"] for key, run in r["throughput"]["runs"].items()
             if run["throughput_vs_in_memory"] < 0.9}  # fmt: skip
    lines += [
        "",
        f"Goal: throughput at least 0.9 of the in-memory inferer. Best here: {best:.2f}: "
        + ("met" if best >= 0.9 else f"**missed by {0.9 - best:.2f}**")
        + (
            "; "
            + ", ".join(f"**{key} is below it by {0.9 - value:.2f}**" for key, value in below.items())
            + " (the same 2 threads in one process as the in-memory run: every block also reads its input context, "
            "whose margins overlap the neighbours', compresses and writes its chunks, and is a dask task; on 2 cores "
            "none of that is hidden behind the network's arithmetic)."
            if below
            else "."
        ),
        "",
        "Why 2 workers x 1 thread can beat the in-memory inferer: it runs one process with 2 intra-op threads, and "
        "this small network (2-4 features) splits poorly across threads; two single-threaded workers each run whole "
        "blocks. The timings carry the shared machine's noise (see the spread of the runs).",
        "",
        "On this 2-core machine, 2 workers of 1 thread and 1 worker of 2 threads share the same cores; the blocks are"
        " independent, so on more cores (or one GPU per worker) throughput grows with the workers until the storage's"
        " read/write bandwidth limits it.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
