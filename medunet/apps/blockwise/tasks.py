"""A blockwise run: the output prepared (or resumed), one prediction task per block, then the instances."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medunet.apps.blockwise.instances import stitch_instances
from medunet.apps.blockwise.job import (
    BlockPlan,
    BlockwiseJob,
    BlockwiseReport,
    job_record,
    marker,
    network_fingerprint,
    plan_job,
)
from medunet.apps.blockwise.runner import dask_client, open_array, run_phase
from medunet.inference import BlockGrid, predict_region, scores_to_volume, to_channels_last
from medunet.io.segmentation_volume import create_segmentation_volume, stored_job
from medunet.io.volumes import Volume, VolumeError, check_writable_output, export_tiff, open_volume
from medunet.utils.enums import VolumeOutput
from medunet.utils.files import atomic_write_text

__all__ = ["run_blockwise"]

logger = logging.getLogger(__name__)

# Per worker process: opened volumes, so that a worker reads metadata once, not once per block.
_OPEN: dict[tuple[str, str | None], Volume] = {}


def _volume(path: str, array: str | None) -> Volume:
    key = (path, array)
    if key not in _OPEN:
        _OPEN[key] = open_volume(path, array)
    return _OPEN[key]


def _predict_block(plan: BlockPlan, network: torch.nn.Module, start: tuple[int, ...], size: tuple[int, ...]) -> str:
    """One dask task: the block's output, written into its chunks, then its marker. Returns what it did."""
    job = plan.job
    done = marker(job.output, "predict", start)
    if done.exists():
        return "skipped"
    if job.torch_threads is not None and torch.get_num_threads() != job.torch_threads:
        torch.set_num_threads(job.torch_threads)
    device = job.network_device()
    if next(network.parameters()).device != device:
        network.to(device)  # the worker's own copy of the network, moved once
    if job.channels_last:
        network = to_channels_last(network)  # in place; a no-op once converted
    source = _volume(job.input, job.array).channel_first
    region = predict_region(
        job.inferer(), source, start, size, network, image_shape=plan.grid.image_shape, plan=plan.tile_plan,
        transform=job.intensity, sw_device=device,
    )  # fmt: skip
    data = scores_to_volume(region, job.output_mode, job.probability_dtype)
    spatial = BlockGrid.slices(start, size)
    index = spatial if job.output_mode == VolumeOutput.LABELS else (slice(None), *spatial)
    open_array(Path(job.output) / "0")[index] = data
    atomic_write_text(done, json.dumps({"start": list(start), "size": list(size), "pid": os.getpid()}))
    return "computed"


def run_blockwise(
    job: BlockwiseJob,
    network: torch.nn.Module,
    scheduler: Any = None,
    n_workers: int = 1,
    overwrite: bool = False,
    retries: int = 2,
    progress: bool = True,
    memory_limit: str | None = None,
    tiff: str | None = None,
) -> BlockwiseReport:
    """Segments ``job.input`` into ``job.output`` block by block on dask; resumes an interrupted run of the job.

    Args:
        job: what to compute (see :class:`BlockwiseJob`).
        network: the trained network (a medunet ``ValidUNet`` in eval mode; sent to every worker once).
        scheduler: ``None`` (a ``LocalCluster`` of ``n_workers`` processes, closed at the end), a scheduler
            address (``"tcp://host:8786"``), or a ``distributed.Client``.
        n_workers: worker processes of the local cluster.
        overwrite: replace an existing output that another job made (the same job's output is resumed), and an
            existing ``tiff``.
        retries: times a failing block is retried before the run fails.
        progress: a progress bar per phase (the dask dashboard, where installed, shows the tasks too).
        memory_limit: per local worker (dask's syntax, e.g. ``"2GiB"``); a worker above it is restarted.
        tiff: also export the finished output (array ``0``) to this OME-TIFF (checked writable before the run).

    Raises:
        FileNotFoundError / :class:`VolumeError`: unreadable input, or an output that cannot be written or that
        exists from another job without ``overwrite`` (each naming the path). ``ValueError``: a volume whose
        dimensionality does not fit the network, or blocks / chunks not on the pooling grid or not aligned.
    """
    if tiff:  # refused before the run, not after it
        check_writable_output(Path(tiff), overwrite, protect=[job.input, job.output])
    network = network.eval()
    volume = open_volume(job.input, job.array)
    plan, chunks = plan_job(job, volume, network)
    if job.torch_threads is None and scheduler is None:
        job = BlockwiseJob(**{**asdict(job), "torch_threads": max(1, (os.cpu_count() or 1) // n_workers)})
        plan = BlockPlan(job, plan.tile_plan, plan.grid, plan.out_channels)
    _prepare_output(plan, volume, job_record(plan, network_fingerprint(network)), chunks, overwrite)
    blocks = plan.grid.blocks()
    report = BlockwiseReport(output=job.output, blocks=len(blocks))
    with dask_client(scheduler, n_workers, memory_limit) as client:
        if client.dashboard_link and progress:
            logger.info("dask dashboard: %s", client.dashboard_link)
        [remote] = client.scatter([network], broadcast=True)
        run_phase(
            client, "predict", _predict_block, [(plan, remote, s, n) for s, n in blocks], retries, progress, report
        )
        if job.instances:
            report.instances = stitch_instances(
                client, Path(job.output), plan.grid.block_shape, retries, progress, report
            )
    report.computed = report.phases["predict"]["computed"]
    report.skipped = report.phases["predict"]["skipped"]
    if tiff:
        export_tiff(job.output, tiff, array="0", overwrite=overwrite)
    return report


def _prepare_output(plan: BlockPlan, volume: Volume, record: dict, chunks: tuple[int, ...], overwrite: bool) -> None:
    """Creates the output, or resumes it when it holds the same job; refuses anything else without ``overwrite``."""
    job = plan.job
    out = Path(job.output)
    check_writable_output(out, overwrite=True, protect=[job.input])
    if out.exists():
        previous = stored_job(out)
        if previous == record:
            logger.info("%s holds this job's output: resuming (finished blocks are skipped)", out)
            return
        if not overwrite:
            what = "another job's output (different input, network or settings)" if previous else "not medunet's output"
            raise VolumeError(
                f"{out} already exists and is {what}; medunet does not overwrite it. Choose another output path, "
                "or pass --overwrite (overwrite=True) to replace it"
            )
    labels = job.output_mode == VolumeOutput.LABELS
    dtype: Any
    if labels:
        dtype = np.uint8 if plan.out_channels <= 256 else np.uint16
    else:
        dtype = np.float32 if job.output_mode == VolumeOutput.LOGITS else np.dtype(job.probability_dtype)
    create_segmentation_volume(
        out, volume, plan.grid.image_shape, dtype, chunks, None if labels else plan.out_channels, record,
        instances=job.instances, overwrite=overwrite, name=f"medunet {job.output_mode}",
    )  # fmt: skip
