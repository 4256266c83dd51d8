"""Running a bundle under ``torchrun``: the process's rank and device, process-group set-up and tear-down,
and the summary of a distributed inference.

Outside ``torchrun`` (no ``RANK`` in the environment, no process group) every function behaves as for a
single process of rank 0, so the same bundle config serves both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from medunet.utils.files import atomic_write_json

__all__ = [
    "default_device",
    "distributed_model",
    "finish_distributed",
    "gather_inference_summary",
    "init_distributed",
    "is_not_rank0",
    "process_rank",
    "run_inference_shard",
    "world_size",
]


def _in_process_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def process_rank() -> int:
    """This process's global rank: from the process group when it is initialised, else ``$RANK`` (0 alone)."""
    if _in_process_group():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0"))


def is_not_rank0() -> bool:
    """True on every process but rank 0: the bundles disable checkpoint writers, MLflow and console
    statistics there with ``"_disabled_": "@is_not_rank0"``."""
    return process_rank() != 0


def world_size() -> int:
    """Processes in the run: from the process group when it is initialised, else ``$WORLD_SIZE`` (1 alone)."""
    if _in_process_group():
        return int(dist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed_model(network: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """``network`` on ``device`` wrapped in ``DistributedDataParallel`` (bound to that GPU on CUDA)."""
    device = torch.device(device)
    ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network.to(device), device_ids=ids)


def default_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` (``cuda:0`` alone) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def init_distributed(device: torch.device | str) -> None:
    """Joins the ``torchrun`` process group (NCCL on CUDA, gloo on the CPU), binds the CUDA device and
    quietens the log of every rank but 0 (warnings still show)."""
    device = torch.device(device)
    if not _in_process_group():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if is_not_rank0():
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("ignite").setLevel(logging.WARNING)


def finish_distributed() -> None:
    """Leaves the process group (nothing to do outside ``torchrun``)."""
    if _in_process_group():
        dist.destroy_process_group()


def gather_inference_summary(output_dir: str | Path, cases: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Collects which cases every rank segmented and writes ``<output_dir>/inference_summary.json`` on rank 0
    (returns the summary there, None elsewhere). Without torch.distributed it just writes this process's list."""
    mine = [str(c["image"]) for c in cases]
    if _in_process_group():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        rank = dist.get_rank()
    else:
        gathered, rank = [mine], 0
    if rank != 0:
        return None
    every = [c for part in gathered for c in part]
    summary = {
        "ranks": len(gathered),
        "cases": len(every),
        "duplicates": sorted({c for c in every if every.count(c) > 1}),
        "per_rank": {str(r): part for r, part in enumerate(gathered)},
    }
    atomic_write_json(Path(output_dir) / "inference_summary.json", summary, indent=2)
    return summary


def run_inference_shard(evaluator: Any, cases: Sequence[dict[str, Any]], output_dir: str | Path) -> None:
    """Runs ``evaluator`` over this rank's ``cases`` (a rank may have none when there are fewer cases than
    processes), then writes the summary of all ranks (:func:`gather_inference_summary`)."""
    if cases:
        evaluator.run()
    gather_inference_summary(output_dir, cases)
