"""What every phase of a blockwise run shares: the dask client, one task per block with progress and counts, and
the output's arrays opened by the tasks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medunet.apps.blockwise.job import BlockwiseReport

__all__ = ["dask_client", "open_array", "run_phase"]


def open_array(path: str | Path) -> Any:
    """A zarr array of the output, opened for writing (a task writes only its own block's chunks)."""
    import zarr

    return zarr.open_array(str(path), mode="r+")


@contextlib.contextmanager
def dask_client(scheduler: Any, n_workers: int, memory_limit: str | None) -> Iterator[Any]:
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


def run_phase(
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
