"""Instance labels of a blockwise class image, in three resumable passes over its blocks.

1. *label*: connected components of each block's foreground (face connectivity), numbered provisionally so that
   blocks never share a number;
2. *stitch*: the pairs of provisional labels that touch across each block's far faces;
3. *relabel*: union-find over those pairs (:class:`scipy.cluster.hierarchy.DisjointSet`) gives every component its
   final number, written to the output's NGFF label image.

The result equals :func:`medunet.utils.labels.label_components` of the whole foreground up to renumbering. Each
pass leaves a marker per block, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medunet.apps.blockwise.job import BlockwiseReport, marker
from medunet.apps.blockwise.runner import dask_client, open_array, run_phase
from medunet.inference import BlockGrid
from medunet.io.segmentation_volume import INSTANCES, STATE, add_label_image
from medunet.utils.files import atomic_write_text
from medunet.utils.labels import label_components

__all__ = ["label_instances", "stitch_instances"]

_PROVISIONAL = "provisional"  # the working array of provisional labels, inside the output's STATE folder


@dataclass(frozen=True)
class _Output:
    """The output folder and its block grid (small; pickled to the workers)."""

    path: str
    grid: BlockGrid


def _label_block(out: _Output, start: tuple[int, ...], size: tuple[int, ...], base: int) -> tuple[str, int]:
    """Pass 1: connected components of the block's foreground, numbered ``base + 1 ..`` (provisional)."""
    done = marker(out.path, "label", start)
    if done.exists():
        return "skipped", int(json.loads(done.read_text())["count"])
    spatial = BlockGrid.slices(start, size)
    classes = np.asarray(open_array(Path(out.path) / "0")[spatial])
    components = label_components(classes > 0)
    count = int(components.max(initial=0))
    provisional = np.where(components > 0, components.astype(np.uint64) + np.uint64(base), np.uint64(0))
    open_array(Path(out.path) / STATE / _PROVISIONAL)[spatial] = provisional
    atomic_write_text(done, json.dumps({"count": count}))
    return "computed", count


def _face_pairs(out: _Output, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """Pass 2: the pairs of provisional labels that touch across the block's far faces."""
    provisional = open_array(Path(out.path) / STATE / _PROVISIONAL)
    pairs = []
    for axis in range(len(start)):
        end = start[axis] + size[axis]
        if end >= out.grid.image_shape[axis]:
            continue
        index = list(BlockGrid.slices(start, size))
        index[axis] = slice(end - 1, end + 1)
        faces = np.asarray(provisional[tuple(index)])
        a, b = np.take(faces, 0, axis=axis).ravel(), np.take(faces, 1, axis=axis).ravel()
        both = (a > 0) & (b > 0)
        if both.any():
            pairs.append(np.unique(np.stack([a[both], b[both]], axis=1), axis=0))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.uint64)


def _relabel_block(out: _Output, start: tuple[int, ...], size: tuple[int, ...], base: int, final: np.ndarray) -> str:
    """Pass 3: provisional labels ``base + k`` become ``final[k - 1]``; written to the instance image."""
    done = marker(out.path, "relabel", start)
    if done.exists():
        return "skipped"
    spatial = BlockGrid.slices(start, size)
    provisional = np.asarray(open_array(Path(out.path) / STATE / _PROVISIONAL)[spatial])
    lookup = np.concatenate([[0], final]).astype(np.uint32)
    local = np.where(provisional > 0, provisional - np.uint64(base), np.uint64(0)).astype(np.int64)
    open_array(Path(out.path) / INSTANCES / "0")[spatial] = lookup[local]
    atomic_write_text(done, "{}")
    return "computed"


def label_instances(
    output: str | Path,
    block_shape: Sequence[int],
    scheduler: Any = None,
    n_workers: int = 1,
    retries: int = 2,
    progress: bool = True,
    report: BlockwiseReport | None = None,
) -> int:
    """Instance labels of a class image written by :func:`~medunet.apps.blockwise.run_blockwise` (or any OME-Zarr
    image whose ``0`` array holds classes, 0 = background), written to ``<output>/labels/instances``. Resumable
    like the prediction (markers per block and pass). Returns the number of instances."""
    with dask_client(scheduler, n_workers, None) as client:
        return stitch_instances(client, Path(output), tuple(block_shape), retries, progress, report)


def stitch_instances(
    client: Any, output: Path, block_shape: tuple[int, ...], retries: int, progress: bool,
    report: BlockwiseReport | None,
) -> int:  # fmt: skip
    """The three passes on ``client``; returns the instance count."""
    import zarr
    from scipy.cluster.hierarchy import DisjointSet

    shape = tuple(int(s) for s in open_array(output / "0").shape)
    out = _Output(str(output), BlockGrid(shape, block_shape))
    blocks = out.grid.blocks()
    report = report or BlockwiseReport(output=str(output), blocks=len(blocks))
    (output / STATE / "blocks").mkdir(parents=True, exist_ok=True)
    done = output / STATE / "instances.json"
    if done.exists():  # a rerun of a finished job: its provisional labels are gone, the instances are written
        for phase in ("label", "stitch", "relabel"):
            report.phases[phase] = {"computed": 0, "skipped": len(blocks)}
        return int(json.loads(done.read_text())["instances"])
    if not (output / STATE / _PROVISIONAL / "zarr.json").exists():
        zarr.open_array(
            str(output / STATE / _PROVISIONAL), mode="w", shape=shape, chunks=block_shape, dtype=np.uint64,
            fill_value=0, zarr_format=3,
        )  # fmt: skip
    add_label_image(output, block_shape)  # present already when run_blockwise created the output
    # Provisional labels of block i are base_i + 1 .. base_i + count_i with base_i = i * (voxels per block):
    # unique before the counts are known, so the blocks can be labelled independently.
    per_block = math.prod(block_shape)
    bases = [i * per_block for i in range(len(blocks))]
    labelled = run_phase(
        client, "label", _label_block, [(out, s, n, b) for (s, n), b in zip(blocks, bases)], retries, progress, report
    )
    counts = [int(count) for _, count in labelled]
    pairs = run_phase(client, "stitch", _face_pairs, [(out, s, n) for s, n in blocks], retries, progress, report)
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
    run_phase(
        client, "relabel", _relabel_block,
        [(out, s, n, base, final[offsets[i] : offsets[i + 1]]) for i, ((s, n), base) in enumerate(zip(blocks, bases))],
        retries, progress, report,
    )  # fmt: skip
    count = int(final.max(initial=0))
    atomic_write_text(done, json.dumps({"instances": count}))
    shutil.rmtree(output / STATE / _PROVISIONAL, ignore_errors=True)
    return count
