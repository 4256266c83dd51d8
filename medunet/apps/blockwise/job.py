"""What a blockwise run computes: the job, its plan (tiles and blocks), its record in the output, its report."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from medunet.inference import BlockGrid, OverlapTileInferer, TilePlan
from medunet.io.segmentation_volume import STATE
from medunet.io.volumes import Volume, VolumeError
from medunet.networks.geometry import UNetGeometry
from medunet.utils.enums import PaddingMode, Precision, ProbabilityDtype, VolumeOutput, look_up

__all__ = [
    "BlockPlan",
    "BlockwiseJob",
    "BlockwiseReport",
    "check_blocks",
    "job_record",
    "marker",
    "network_fingerprint",
    "plan_job",
]


@dataclass(frozen=True)
class BlockwiseJob:
    """What to compute; stored in the output so that a rerun resumes only the same job.

    Attributes:
        input / array: the source volume (zarr, OME-Zarr, TIFF) and the array inside a zarr group.
        output: the output OME-Zarr folder.
        output_mode: ``labels`` (uint8 classes), ``probabilities`` (``probability_dtype``) or ``logits``.
        probability_dtype: ``"uint8"`` (0..255, rounded) or ``"float16"``.
        output_tile / input_tile: the network's tile, as the in-memory inferer takes it; an ``input_tile``
            replaces the ``output_tile`` (the bundles give their ``output_tile``, and ``input_tile`` when asked).
            Neither: the planner's choice for the whole volume.
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
        precision: the inference preset, as for :class:`OverlapTileInferer` (``"float32"``, the default, is
            the exactness contract).
    """

    input: str
    output: str
    array: str | None = None
    output_mode: str = VolumeOutput.LABELS.value
    probability_dtype: str = ProbabilityDtype.UINT8.value
    output_tile: tuple[int, ...] | None = None
    input_tile: tuple[int, ...] | None = None
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
    precision: str = Precision.FLOAT32.value

    def inferer(self) -> OverlapTileInferer:
        output = "probabilities" if self.output_mode == VolumeOutput.PROBABILITIES else "logits"
        return OverlapTileInferer(
            input_tile=self.input_tile, output_tile=None if self.input_tile else self.output_tile, flip_axes=self.flip_axes,
            padding_mode=self.padding_mode, output=output, precision=self.precision,
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

    def network_device(self) -> torch.device:
        """The device a worker runs the network on (``"auto"``: its CUDA device when it has one)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


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
class BlockPlan:
    """Everything a block task needs besides the network (small; pickled to the workers): the job, the whole
    volume's tile plan, the block grid and the network's output channels."""

    job: BlockwiseJob
    tile_plan: TilePlan
    grid: BlockGrid
    out_channels: int


def network_fingerprint(network: torch.nn.Module) -> str:
    """SHA-256 of the network's weights and buffers (names, shapes, bytes): which network made an output."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_blocks(block: Sequence[int], chunks: Sequence[int], stride: Sequence[int], dims: int) -> None:
    """Refuses blocks off the pooling grid, or blocks that are not a multiple of the output chunks (two tasks
    would write one chunk), naming a shape that works."""
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


def plan_job(job: BlockwiseJob, volume: Volume, network: torch.nn.Module) -> tuple[BlockPlan, tuple[int, ...]]:
    """The job's plan on ``volume`` and its output chunks, after checking that the volume fits the network and
    the job's options fit each other."""
    geometry = getattr(network, "geometry", None)
    if not isinstance(geometry, UNetGeometry):
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
    shape = tuple(view.shape[1:])
    tile_plan = job.inferer().plan(shape, network)
    block = tuple(job.block_shape) if job.block_shape else tile_plan.default_block_shape()
    chunks = tuple(job.chunks) if job.chunks else block
    check_blocks(block, chunks, geometry.stride, dims)
    out_channels = int(getattr(network, "out_channels", 2))
    return BlockPlan(job, tile_plan, BlockGrid(shape, block), out_channels), chunks


def job_record(plan: BlockPlan, weights: str) -> dict:
    """What identifies the job's output (stored in it; a rerun with an equal record resumes): the job without
    where and how it runs, the tile and block actually used, and the network's fingerprint."""
    record = asdict(plan.job)
    record.update(
        input=str(Path(plan.job.input).resolve()),
        output=None,
        torch_threads=None,
        device=None,
        input_tile=list(plan.tile_plan.input_tile),
        output_tile=None,  # the input tile says it
        block_shape=list(plan.grid.block_shape),
        weights_sha256=weights,
    )
    return json.loads(json.dumps(record))  # tuples -> lists, as read back from the zarr attributes


def marker(output: str | Path, phase: str, start: Sequence[int]) -> Path:
    """The file that says a block of ``phase`` finished (written after its chunks)."""
    return Path(output) / STATE / "blocks" / f"{phase}-{'-'.join(str(s) for s in start)}.json"
