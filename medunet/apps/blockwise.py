"""Blockwise inference of volumes larger than memory, on dask.distributed, resumable, exact.

The output volume is cut into blocks (multiples of the output chunks and of the network's pooling stride); one
dask task per block reads the block's input context from the source (zarr, OME-Zarr, TIFF), runs the network on
the tiles of the whole image's tile plan (:meth:`OverlapTileInferer.predict_region`), and writes the block's
chunks. Blocks are independent, so the result is **bit-identical** to the in-memory inferer with the same tile
(float32, same torch thread count), whatever the block shape, the number of workers or the order.

Resumable and idempotent: a block that finished leaves a marker file (``<output>/.medunet/blocks/``) written
after its chunks, so a rerun of the same job (same input, network, settings) skips it; a block interrupted
mid-write has no marker and is computed again, overwriting its own chunks only. Failed blocks are retried
(``retries``), and a worker that dies has its blocks re-run by the scheduler.

Instances (``instances=True``): connected components of the foreground per block, then stitched across block
faces by union-find over the pairs of labels that touch (:class:`scipy.cluster.hierarchy.DisjointSet`), so the
instance labels equal a whole-volume connected-component labelling up to renumbering.

Any dask scheduler runs it: a ``LocalCluster`` on one machine by default, or the address of a running
scheduler (dask-jobqueue on SLURM, Kubernetes); the workers need medunet, the input path and the output path
(a shared file system or object store).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medunet.inference import OverlapTileInferer, scores_to_volume, to_channels_last
from medunet.inference.tiling import TilePlan, default_block_shape
from medunet.io.volumes import Volume, VolumeError, check_writable_output, create_volume, open_volume
from medunet.utils.enums import PaddingMode, ProbabilityDtype, VolumeOutput, look_up
from medunet.utils.files import atomic_write_text
from medunet.utils.labels import label_components

__all__ = ["BlockwiseJob", "BlockwiseReport", "block_grid", "label_instances", "network_fingerprint", "run_blockwise"]

logger = logging.getLogger(__name__)

_STATE = ".medunet"
_INSTANCES = "labels/instances"


@dataclass(frozen=True)
class BlockwiseJob:
    """What to compute; stored in the output so that a rerun resumes only the same job.

    Attributes:
        input / array: the source volume (zarr, OME-Zarr, TIFF) and the array inside a zarr group.
        output: the output OME-Zarr folder.
        output_mode: ``labels`` (uint8 classes), ``probabilities`` (``probability_dtype``) or ``logits``.
        probability_dtype: ``"uint8"`` (0..255, rounded) or ``"float16"``.
        roi_size: the network's input tile (default: the planner's choice for the whole volume).
        block_shape: output block per task (default: the largest multiple of the pooling stride within the
            output tile, so one tile per block); a multiple of the stride and of ``chunks``.
        chunks: output chunk shape (default: ``block_shape``).
        flip_axes / padding_mode: as for :class:`OverlapTileInferer`.
        scale / offset / clip: voxel-wise intensity ``clip(x * scale + offset)`` before the network (per-image
            statistics cannot be taken per block: give the numbers).
        instances: also write instance labels (connected components of the foreground, stitched across blocks).
        torch_threads: intra-op threads per worker (default: the machine's cores shared among local workers).
        device: where each worker runs the network: ``"auto"`` (the worker's CUDA device when it has one, else
            the CPU), ``"cuda"``, ``"cuda:1"`` or ``"cpu"``.
        channels_last: tiles and network in channels-last memory format (default, as the inference bundles:
            measured 1.8x faster in 3D on the CPU, ``benchmarks/results/inference_cl.md``). The result is the
            in-memory inferer's with the same setting, bit for bit; between the two formats it differs by float32
            rounding only.
    """

    input: str
    output: str
    array: str | None = None
    output_mode: str = VolumeOutput.LABELS.value
    probability_dtype: str = ProbabilityDtype.UINT8.value
    roi_size: tuple[int, ...] | None = None
    block_shape: tuple[int, ...] | None = None
    chunks: tuple[int, ...] | None = None
    flip_axes: tuple[int, ...] = ()
    padding_mode: str = PaddingMode.SYMMETRIC.value
    scale: float = 1.0
    offset: float = 0.0
    clip: tuple[float, float] | None = None
    instances: bool = False
    torch_threads: int | None = None
    device: str = "auto"
    channels_last: bool = True

    def inferer(self) -> OverlapTileInferer:
        output = "probabilities" if self.output_mode == VolumeOutput.PROBABILITIES else "logits"
        return OverlapTileInferer(
            roi_size=self.roi_size, flip_axes=self.flip_axes, padding_mode=self.padding_mode, output=output, amp=False,
            channels_last=self.channels_last,
        )  # fmt: skip

    def intensity(self, block: np.ndarray) -> np.ndarray:
        out = block.astype(np.float32)
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        if self.offset != 0.0:
            out += np.float32(self.offset)
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out


@dataclass
class BlockwiseReport:
    """What a run did: blocks computed and skipped (done by an earlier run), per phase, and where the output is."""

    output: str
    blocks: int
    computed: int = 0
    skipped: int = 0
    instances: int | None = None
    phases: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass(frozen=True)
class _Plan:
    """Everything a block task needs besides the network (small; pickled to the workers)."""

    job: BlockwiseJob
    tile_plan: TilePlan
    image_shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    out_channels: int


@dataclass(frozen=True)
class _Grid:
    """The output's blocks, for the instance passes: the output folder, its spatial shape and the block shape."""

    output: str
    image_shape: tuple[int, ...]
    block_shape: tuple[int, ...]


def block_grid(image_shape: Sequence[int], block_shape: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(start, size)`` of every block, in C order (the last blocks clipped to the image)."""
    ranges = [range(0, s, b) for s, b in zip(image_shape, block_shape)]
    return [
        (start, tuple(min(b, s - i) for i, b, s in zip(start, block_shape, image_shape)))
        for start in itertools.product(*ranges)
    ]


def network_fingerprint(network: torch.nn.Module) -> str:
    """SHA-256 of the network's weights and buffers (names, shapes, bytes): which network made an output."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_blocks(block: Sequence[int], chunks: Sequence[int], stride: Sequence[int], dims: int) -> None:
    if len(block) != dims or len(chunks) != dims:
        raise ValueError(
            f"block_shape {tuple(block)} and chunks {tuple(chunks)} need {dims} entries (one per spatial axis)"
        )
    if any(b < 1 for b in block) or any(c < 1 for c in chunks):
        raise ValueError(f"block_shape {tuple(block)} and chunks {tuple(chunks)} must be positive")
    off_grid = [d for d, (b, p) in enumerate(zip(block, stride)) if b % p]
    if off_grid:
        nearest = tuple(max(p, round(b / p) * p) for b, p in zip(block, stride))
        raise ValueError(
            f"block_shape {tuple(block)} is not on the network's pooling grid (stride {tuple(stride)}, axes "
            f"{off_grid}); use multiples of the stride, e.g. {nearest}"
        )
    misaligned = [d for d, (b, c) in enumerate(zip(block, chunks)) if b % c]
    if misaligned:
        raise ValueError(
            f"block_shape {tuple(block)} is not a multiple of the output chunks {tuple(chunks)} (axes {misaligned}): "
            "two blocks would write into one chunk at once. Use a block shape that is a multiple of the chunks, or "
            "chunks that divide it (by default the chunks are the blocks)"
        )


def _marker(output: str | Path, phase: str, start: Sequence[int]) -> Path:
    return Path(output) / _STATE / "blocks" / f"{phase}-{'-'.join(str(s) for s in start)}.json"


# Per worker process: opened volumes and arrays, so that a worker reads metadata once, not once per block.
_OPEN: dict[tuple[str, str | None], Volume] = {}


def _volume(path: str, array: str | None) -> Volume:
    key = (path, array)
    if key not in _OPEN:
        _OPEN[key] = open_volume(path, array)
    return _OPEN[key]


def _zarr(path: str | Path) -> Any:
    import zarr

    return zarr.open_array(str(path), mode="r+")


def _slices(start: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    """The index of the block ``[start, start + size)``."""
    return tuple(slice(s, s + n) for s, n in zip(start, size))


def _set_threads(job: BlockwiseJob) -> None:
    if job.torch_threads is not None and torch.get_num_threads() != job.torch_threads:
        torch.set_num_threads(job.torch_threads)


def _predict_block(plan: _Plan, network: torch.nn.Module, start: tuple[int, ...], size: tuple[int, ...]) -> str:
    """One dask task: the block's output, written into its chunks, then its marker. Returns what it did."""
    job = plan.job
    marker = _marker(job.output, "predict", start)
    if marker.exists():
        return "skipped"
    _set_threads(job)
    device = torch.device("cuda" if job.device == "auto" and torch.cuda.is_available() else
                          "cpu" if job.device == "auto" else job.device)  # fmt: skip
    if next(network.parameters()).device != device:
        network.to(device)  # the worker's own copy of the network, moved once
    if job.channels_last:
        network = to_channels_last(network)  # in place; a no-op once converted
    source = _volume(job.input, job.array).channel_first
    region = job.inferer().predict_region(
        source, start, size, network, image_shape=plan.image_shape, plan=plan.tile_plan, transform=job.intensity,
        sw_device=device,
    )  # fmt: skip
    data = scores_to_volume(region, job.output_mode, job.probability_dtype)
    spatial = _slices(start, size)
    index = spatial if job.output_mode == VolumeOutput.LABELS else (slice(None), *spatial)
    _zarr(Path(job.output) / "0")[index] = data
    atomic_write_text(marker, json.dumps({"start": list(start), "size": list(size), "pid": os.getpid()}))
    return "computed"


def _label_block(plan: _Grid, start: tuple[int, ...], size: tuple[int, ...], base: int) -> tuple[str, int]:
    """Instance pass 1: connected components of the block's foreground, numbered ``base + 1 ..`` (provisional)."""
    marker = _marker(plan.output, "label", start)
    if marker.exists():
        return "skipped", int(json.loads(marker.read_text())["count"])
    spatial = _slices(start, size)
    classes = np.asarray(_zarr(Path(plan.output) / "0")[spatial])
    components = label_components(classes > 0)
    count = int(components.max(initial=0))
    provisional = np.where(components > 0, components.astype(np.uint64) + np.uint64(base), np.uint64(0))
    _zarr(Path(plan.output) / _STATE / "provisional")[spatial] = provisional
    atomic_write_text(marker, json.dumps({"count": count}))
    return "computed", count


def _face_pairs(plan: _Grid, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """Instance pass 2: the pairs of provisional labels that touch across the block's far faces."""
    provisional = _zarr(Path(plan.output) / _STATE / "provisional")
    pairs = []
    for axis in range(len(start)):
        end = start[axis] + size[axis]
        if end >= plan.image_shape[axis]:
            continue
        index = list(_slices(start, size))
        index[axis] = slice(end - 1, end + 1)
        faces = np.asarray(provisional[tuple(index)])
        a, b = np.take(faces, 0, axis=axis).ravel(), np.take(faces, 1, axis=axis).ravel()
        both = (a > 0) & (b > 0)
        if both.any():
            pairs.append(np.unique(np.stack([a[both], b[both]], axis=1), axis=0))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)


def _relabel_block(plan: _Grid, start: tuple[int, ...], size: tuple[int, ...], base: int, final: np.ndarray) -> str:
    """Instance pass 3: provisional labels ``base + k`` become ``final[k - 1]``; written to the instance image."""
    marker = _marker(plan.output, "relabel", start)
    if marker.exists():
        return "skipped"
    spatial = _slices(start, size)
    provisional = np.asarray(_zarr(Path(plan.output) / _STATE / "provisional")[spatial])
    lookup = np.concatenate([[0], final]).astype(np.uint32)
    local = np.where(provisional > 0, provisional - np.uint64(base), np.uint64(0)).astype(np.int64)
    _zarr(Path(plan.output) / _INSTANCES / "0")[spatial] = lookup[local]
    atomic_write_text(marker, "{}")
    return "computed"


@contextlib.contextmanager
def _client(scheduler: Any, n_workers: int, memory_limit: str | None) -> Iterator[Any]:
    """A dask client: the given one (left open), one connected to a scheduler address, or a LocalCluster of
    processes (both closed on exit)."""
    from distributed import Client, LocalCluster

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler
        return
    if isinstance(scheduler, str):
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit or "auto",
            dashboard_address=":0",  # a free port: the dashboard (where bokeh is installed) never collides
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _run_phase(
    client: Any,
    name: str,
    function: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    retries: int,
    progress: bool,
    report: BlockwiseReport,
) -> list[Any]:
    """Submits one task per call, shows progress as they finish, and counts computed / skipped blocks."""
    from distributed import as_completed

    futures = [
        client.submit(function, *args, retries=retries, pure=False, key=f"medunet-{name}-{i}")
        for i, args in enumerate(calls)
    ]
    position = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(futures), desc=f"blockwise {name}", unit="block")
    counts = {"computed": 0, "skipped": 0}
    try:
        for future in as_completed(futures):
            result = future.result()
            results[position[future.key]] = result
            status = result[0] if isinstance(result, tuple) else result
            if isinstance(status, str) and status in counts:
                counts[status] += 1
            if bar is not None:
                bar.update(1)
            future.release()
    finally:
        if bar is not None:
            bar.close()
    report.phases[name] = counts
    return results


def _job_record(job: BlockwiseJob, plan: _Plan, weights: str) -> dict:
    record = asdict(job)
    record.update(
        input=str(Path(job.input).resolve()),
        output=None,
        torch_threads=None,
        device=None,
        input_tile=list(plan.tile_plan.input_tile),
        block_shape=list(plan.block_shape),
        weights_sha256=weights,
    )
    return json.loads(json.dumps(record))  # tuples -> lists, as read back from the zarr attributes


def run_blockwise(
    job: BlockwiseJob,
    network: torch.nn.Module,
    scheduler: Any = None,
    n_workers: int = 1,
    overwrite: bool = False,
    retries: int = 2,
    progress: bool = True,
    memory_limit: str | None = None,
) -> BlockwiseReport:
    """Segments ``job.input`` into ``job.output`` block by block on dask; resumes an interrupted run of the job.

    Args:
        job: what to compute (see :class:`BlockwiseJob`).
        network: the trained network (a medunet ``ValidUNet`` in eval mode; sent to every worker once).
        scheduler: ``None`` (a ``LocalCluster`` of ``n_workers`` processes, closed at the end), a scheduler
            address (``"tcp://host:8786"``), or a ``distributed.Client``.
        n_workers: worker processes of the local cluster.
        overwrite: replace an existing output that another job made (the same job's output is resumed).
        retries: times a failing block is retried before the run fails.
        progress: a progress bar per phase (the dask dashboard, where installed, shows the tasks too).
        memory_limit: per local worker (dask's syntax, e.g. ``"2GiB"``); a worker above it is restarted.

    Raises:
        FileNotFoundError / :class:`VolumeError`: unreadable input, or an output that cannot be written or that
        exists from another job without ``overwrite`` (each naming the path). ``ValueError``: a volume whose
        dimensionality does not fit the network, or blocks / chunks not on the pooling grid or not aligned.
    """
    network = network.eval()
    volume = open_volume(job.input, job.array)
    geometry = getattr(network, "geometry", None)
    if geometry is None:
        raise TypeError("run_blockwise needs a medunet ValidUNet (its .geometry gives the tile arithmetic)")
    dims = geometry.spatial_dims
    view = volume.channel_first
    if len(view.shape) - 1 != dims:
        raise VolumeError(
            f"{job.input}: a volume with axes {volume.axes} (shape {tuple(volume.array.shape)}) has "
            f"{len(view.shape) - 1} spatial axes, but the network is {dims}D; use a {dims}D volume or a {len(view.shape) - 1}D network"
        )
    in_channels = int(getattr(network, "in_channels", view.shape[0]))
    if view.shape[0] != in_channels:
        raise VolumeError(
            f"{job.input}: {view.shape[0]} channel(s) (axes {volume.axes}), but the network takes {in_channels}"
        )
    look_up(job.output_mode, VolumeOutput, "output_mode")
    look_up(job.probability_dtype, ProbabilityDtype, "probability_dtype")
    if job.instances and job.output_mode != VolumeOutput.LABELS:
        raise ValueError(
            "instances=True needs output_mode='labels' (instances are components of the labelled foreground)"
        )
    shape = view.shape[1:]
    tile_plan = job.inferer().plan(shape, network)
    block = tuple(job.block_shape) if job.block_shape else default_block_shape(tile_plan, geometry.stride)
    chunks = tuple(job.chunks) if job.chunks else block
    _check_blocks(block, chunks, geometry.stride, dims)
    out_channels = int(getattr(network, "out_channels", 2))
    if job.torch_threads is None and scheduler is None:
        job = BlockwiseJob(**{**asdict(job), "torch_threads": max(1, (os.cpu_count() or 1) // n_workers)})
    plan = _Plan(job, tile_plan, shape, block, out_channels)
    record = _job_record(job, plan, network_fingerprint(network))
    _prepare_output(job, volume, plan, record, chunks, overwrite)
    blocks = block_grid(shape, block)
    report = BlockwiseReport(output=job.output, blocks=len(blocks))
    with _client(scheduler, n_workers, memory_limit) as client:
        if client.dashboard_link and progress:
            logger.info("dask dashboard: %s", client.dashboard_link)
        [remote] = client.scatter([network], broadcast=True)
        _run_phase(
            client, "predict", _predict_block, [(plan, remote, s, n) for s, n in blocks], retries, progress, report
        )
        if job.instances:
            report.instances = _instances(client, Path(job.output), block, retries, progress, report)
    report.computed = report.phases["predict"]["computed"]
    report.skipped = report.phases["predict"]["skipped"]
    return report


def _prepare_output(
    job: BlockwiseJob, volume: Volume, plan: _Plan, record: dict, chunks: tuple[int, ...], overwrite: bool
) -> None:
    """Creates the output, or resumes it when it holds the same job; refuses anything else without ``overwrite``."""
    import zarr

    out = Path(job.output)
    check_writable_output(out, overwrite=True, protect=[job.input])
    if out.exists():
        try:
            stored: Any = dict(zarr.open_group(str(out), mode="r").attrs).get("medunet", {})
            previous = stored.get("job")
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            previous = None
        if previous == record:
            logger.info("%s holds this job's output: resuming (finished blocks are skipped)", out)
            return
        if not overwrite:
            what = "another job's output (different input, network or settings)" if previous else "not medunet's output"
            raise VolumeError(
                f"{out} already exists and is {what}; medunet does not overwrite it. Choose another output path, "
                "or pass --overwrite (overwrite=True) to replace it"
            )
    spatial_axes = volume.spatial_axes
    dtype: Any
    if job.output_mode == VolumeOutput.LABELS:
        axes, shape, out_chunks = spatial_axes, plan.image_shape, chunks
        dtype = np.uint8 if plan.out_channels <= 256 else np.uint16
    else:
        axes = ("c", *spatial_axes)
        shape, out_chunks = (plan.out_channels, *plan.image_shape), (plan.out_channels, *chunks)
        dtype = np.float32 if job.output_mode == VolumeOutput.LOGITS else np.dtype(job.probability_dtype)
    create_volume(
        out, shape, dtype, out_chunks, axes, volume.voxel_size, volume.origin, volume.unit,
        name=f"medunet {job.output_mode}", attributes={"job": record}, overwrite=overwrite, protect=[job.input],
    )  # fmt: skip
    (out / _STATE).mkdir()


def _create_label_image(out: Path, grid: _Grid) -> None:
    """The working array of provisional labels and the OME-Zarr ``labels/instances`` image of the output (NGFF
    image-label layout, the class image's voxel size and origin)."""
    import zarr

    zarr.open_array(
        str(out / _STATE / "provisional"), mode="w", shape=grid.image_shape, chunks=grid.block_shape, dtype=np.uint64,
        fill_value=0, zarr_format=3,
    )  # fmt: skip
    if (out / _INSTANCES / "0" / "zarr.json").exists():
        return
    classes = open_volume(out)
    root = zarr.open_group(str(out), mode="r+")
    labels = root.require_group("labels")
    labels.attrs["ome"] = {"version": "0.5", "labels": ["instances"]}
    create_volume(
        out / _INSTANCES, grid.image_shape, np.uint32, grid.block_shape, classes.spatial_axes, classes.voxel_size,
        classes.origin, classes.unit, name="instances", overwrite=True,
    )  # fmt: skip
    group = zarr.open_group(str(out / _INSTANCES), mode="r+")
    ome: Any = dict(group.attrs)["ome"]
    ome["image-label"] = {"version": "0.5", "source": {"image": "../../"}}
    group.attrs["ome"] = ome


def label_instances(
    output: str | Path,
    block_shape: Sequence[int],
    scheduler: Any = None,
    n_workers: int = 1,
    retries: int = 2,
    progress: bool = True,
    report: BlockwiseReport | None = None,
) -> int:
    """Instance labels of a class image written by :func:`run_blockwise` (or any OME-Zarr label image whose ``0``
    array holds classes, 0 = background): connected components of the foreground (face connectivity) per block,
    stitched by union-find over the labels that touch across block faces, written to ``<output>/labels/instances``.

    The result equals :func:`medunet.utils.labels.label_components` of the whole foreground up to renumbering.
    Resumable like the prediction (markers per block and pass). Returns the number of instances.
    """
    with _client(scheduler, n_workers, None) as client:
        return _instances(client, Path(output), tuple(block_shape), retries, progress, report)


def _instances(
    client: Any, output: Path, block_shape: tuple[int, ...], retries: int, progress: bool,
    report: BlockwiseReport | None,
) -> int:  # fmt: skip
    """Connected components per block, stitched by union-find across block faces; returns the instance count."""
    from scipy.cluster.hierarchy import DisjointSet

    shape = tuple(int(s) for s in _zarr(output / "0").shape)
    plan = _Grid(str(output), shape, block_shape)
    blocks = block_grid(shape, block_shape)
    report = report or BlockwiseReport(output=str(output), blocks=len(blocks))
    (output / _STATE / "blocks").mkdir(parents=True, exist_ok=True)
    done = output / _STATE / "instances.json"
    if done.exists():  # a rerun of a finished job: its provisional labels are gone, the instances are written
        for phase in ("label", "stitch", "relabel"):
            report.phases[phase] = {"computed": 0, "skipped": len(blocks)}
        return int(json.loads(done.read_text())["instances"])
    # Provisional labels of block i are base_i + 1 .. base_i + count_i with base_i = i * (voxels per block):
    # unique before the counts are known, so the blocks can be labelled independently.
    if not (output / _STATE / "provisional" / "zarr.json").exists():
        _create_label_image(output, plan)
    per_block = math.prod(plan.block_shape)
    bases = [i * per_block for i in range(len(blocks))]
    labelled = _run_phase(
        client, "label", _label_block, [(plan, s, n, b) for (s, n), b in zip(blocks, bases)], retries, progress, report
    )
    counts = [int(count) for _, count in labelled]
    pairs = _run_phase(client, "stitch", _face_pairs, [(plan, s, n) for s, n in blocks], retries, progress, report)
    # Global index of provisional label base_i + k: offset_i + k - 1 (offsets: cumulative counts).
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def index(labels: np.ndarray) -> np.ndarray:
        block = (labels - 1) // per_block
        return offsets[block] + labels - block * per_block - 1

    total = int(offsets[-1])
    edges = np.concatenate([p for p in pairs if len(p)]) if any(len(p) for p in pairs) else np.zeros((0, 2), np.uint64)
    roots = np.arange(total, dtype=np.int64)
    if len(edges):
        a, b = index(edges[:, 0].astype(np.int64)), index(edges[:, 1].astype(np.int64))
        forest = DisjointSet(np.unique(np.concatenate([a, b])).tolist())
        for x, y in zip(a.tolist(), b.tolist()):
            forest.merge(x, y)
        for subset in forest.subsets():
            members = np.fromiter(subset, dtype=np.int64)
            roots[members] = members.min()
    _, final = np.unique(roots, return_inverse=True)
    final = (final + 1).astype(np.uint32)
    _run_phase(
        client, "relabel", _relabel_block,
        [(plan, s, n, base, final[offsets[i] : offsets[i + 1]]) for i, ((s, n), base) in enumerate(zip(blocks, bases))],
        retries, progress, report,
    )  # fmt: skip
    count = int(final.max(initial=0))
    atomic_write_text(done, json.dumps({"instances": count}))
    shutil.rmtree(output / _STATE / "provisional", ignore_errors=True)
    return count
