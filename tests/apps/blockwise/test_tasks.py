"""Blockwise inference on dask.distributed: exact, resumable after SIGKILL, stitched instances, clear errors."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from medunet.apps.blockwise import label_instances, run_blockwise
from medunet.inference import BlockGrid, OverlapTileInferer, to_channels_last
from medunet.io.volumes import VolumeError, create_volume
from medunet.utils.labels import label_components
from tests.apps.blockwise.blockwise_job import BLOCK, TILE, job, network

distributed = pytest.importorskip("distributed")
HERE = Path(__file__).parent


def _input(path: Path, shape: tuple[int, ...], seed: int = 0, chunks: tuple[int, ...] = (16, 16, 16)) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)
    zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="uint8")[:] = data
    return data


def _reference(data: np.ndarray, channels_last: bool = True) -> torch.Tensor:
    """The in-memory inferer on the whole volume, with the blockwise job's intensity, tile and memory format
    (channels-last by default, as the job) and one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        image = torch.from_numpy(job("", "").intensity(data))[None, None]
        net = to_channels_last(network()) if channels_last else network()
        return OverlapTileInferer(input_tile=TILE, channels_last=channels_last)(image, net)[0]
    finally:
        torch.set_num_threads(threads)


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        digest.update(str(p.relative_to(path)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
            digest.update(str(p.stat().st_mtime_ns).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, torch.Tensor]:
    folder = tmp_path_factory.mktemp("blockwise")
    data = _input(folder / "in.zarr", (16, 40, 33))
    return folder / "in.zarr", data, _reference(data)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (workers import torch once): two worker processes, until the worker-count
    test (the module's last) scales it."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


def _scale(cluster, client, workers: int, timeout: float = 120) -> None:
    """Scales the cluster and waits until the scheduler has exactly ``workers`` workers."""
    cluster.scale(workers)
    deadline = time.monotonic() + timeout
    while (count := client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.workers))) != workers:
        assert time.monotonic() < deadline, f"the cluster has {count} workers, not {workers}, after {timeout} s"
        time.sleep(0.2)


def test_labels_probabilities_and_the_output_metadata(volume, client, tmp_path: Path) -> None:
    _source, data, whole = volume
    ome = tmp_path / "in.ome.zarr"
    create_volume(ome, data.shape, np.uint8, (16, 16, 16), ("z", "y", "x"), (2.0, 0.5, 0.25), (10.0, 0.0, -3.0),
                  "micrometer")[:] = data  # fmt: skip
    out = tmp_path / "labels.ome.zarr"
    report = run_blockwise(job(str(ome), str(out), output_mode="labels"), network(), scheduler=client, progress=False)
    assert report.computed == report.blocks
    labels = zarr.open_array(str(out / "0"))
    assert labels.dtype == np.uint8
    assert labels.chunks == BLOCK
    np.testing.assert_array_equal(labels[:], whole.argmax(0).numpy())
    meta = dict(zarr.open_group(str(out)).attrs)["ome"]["multiscales"][0]
    assert [a["name"] for a in meta["axes"]] == ["z", "y", "x"]
    assert meta["axes"][0]["unit"] == "micrometer"
    transforms = meta["datasets"][0]["coordinateTransformations"]
    assert transforms == [{"type": "scale", "scale": [2.0, 0.5, 0.25]},
                          {"type": "translation", "translation": [10.0, 0.0, -3.0]}]  # fmt: skip
    probs = tmp_path / "probs.ome.zarr"
    run_blockwise(job(str(ome), str(probs), output_mode="probabilities"), network(), scheduler=client, progress=False)
    expected = np.rint(torch.softmax(whole, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(zarr.open_array(str(probs / "0"))[:].astype(int) - expected).max() <= 1  # softmax rounding


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.random(shape)
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(field, 1.5)
    return (smooth > np.quantile(smooth, 0.7)).astype(np.uint8)


def test_stitched_instances_equal_whole_volume_components(client, tmp_path: Path) -> None:
    classes = _blobs((30, 50, 44), seed=3)
    out = tmp_path / "classes.ome.zarr"
    create_volume(out, classes.shape, np.uint8, (8, 16, 16), ("z", "y", "x"), (1, 1, 1), (0, 0, 0))[:] = classes
    count = label_instances(out, (8, 16, 16), scheduler=client, progress=False)
    instances = zarr.open_array(str(out / "labels" / "instances" / "0"))[:]
    whole = label_components(classes > 0)
    assert count == whole.max() > 20  # many objects, most of them across block faces
    pairs = np.unique(np.stack([instances.ravel(), whole.ravel()], 1), axis=0)
    # a bijection between the two labellings (up to renumbering), background to background
    assert len(pairs) == whole.max() + 1
    assert len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1])) == len(pairs)
    assert ((instances == 0) == (whole == 0)).all()
    # objects that cross a block face along z carry one label on both sides
    crossing = [np.intersect1d(instances[8 * k - 1], instances[8 * k]) for k in (1, 2, 3)]
    assert sum(len(np.setdiff1d(c, [0])) for c in crossing) > 5
    assert label_instances(out, (8, 16, 16), scheduler=client, progress=False) == count  # a rerun finds it done


def test_instances_through_run_blockwise(volume, client, tmp_path: Path) -> None:
    source, _, whole = volume
    out = tmp_path / "inst.ome.zarr"
    report = run_blockwise(job(str(source), str(out), output_mode="labels", instances=True), network(),
                           scheduler=client, progress=False)  # fmt: skip
    instances = zarr.open_array(str(out / "labels" / "instances" / "0"))[:]
    assert report.instances == label_components(whole.argmax(0).numpy() > 0).max() == instances.max()
    assert dict(zarr.open_group(str(out / "labels")).attrs)["ome"]["labels"] == ["instances"]


def _markers(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / ".medunet" / "blocks").glob("predict-*.json")}


def _start(source: Path, out: Path, workers: int, report: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[2])}
    return subprocess.Popen(
        [sys.executable, str(HERE / "blockwise_job.py"), str(source), str(out), str(workers), str(report)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _wait_for_markers(out: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(_markers(out)) < count if out.exists() else True:
        assert process.poll() is None, f"the job ended early: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, torch.Tensor]:
    folder = tmp_path_factory.mktemp("kill")
    data = _input(folder / "in.zarr", (32, 64, 64), seed=5)
    return folder / "in.zarr", data, _reference(data)


def _workers(pid: int) -> list[int]:
    """The dask worker processes of a local cluster started by process ``pid`` (spawned by its nannies)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        command = " ".join(child.cmdline())
        if "spawn_main" in command and "resource_tracker" not in command:
            found.append(child.pid)
    return found


def test_sigkilled_worker_then_run_resume_without_recomputing_finished_blocks(larger, client, tmp_path: Path) -> None:
    source, _, whole = larger
    out, report = tmp_path / "out.ome.zarr", tmp_path / "report.json"
    process = _start(source, out, 2, report)
    _wait_for_markers(out, 4, process)
    workers = _workers(process.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)  # one worker dies mid-block: its nanny starts another, the block reruns
    progressed = len(_markers(out)) + 6
    _wait_for_markers(out, progressed, process)  # the run goes on after the worker's death
    os.killpg(process.pid, signal.SIGKILL)  # now the whole run: client, scheduler and workers
    process.wait()
    done = _markers(out)
    total = len(BlockGrid(whole.shape[1:], BLOCK))
    assert progressed <= len(done) < total, "the run finished before it was killed: make the volume larger"
    resumed = run_blockwise(job(str(source), str(out)), network(), scheduler=client, progress=False)
    assert (resumed.computed, resumed.skipped, resumed.blocks) == (total - len(done), len(done), total)
    after = _markers(out)
    assert all(after[name] == mtime for name, mtime in done.items()), "a finished block was written again"
    assert np.array_equal(zarr.open_array(str(out / "0"))[:], whole.numpy())


# bad input: a clear error naming the path, nothing of the input changed


def _bad(tmp_path: Path, source: Path, **kwargs: object) -> str:
    before = _tree_digest(source) if source.exists() else None
    with pytest.raises((VolumeError, ValueError, FileNotFoundError)) as err:
        run_blockwise(job(str(source), str(tmp_path / "out.zarr"), **kwargs), network(), progress=False)
    if before is not None:
        assert _tree_digest(source) == before
    return str(err.value)


def test_bad_volumes(tmp_path: Path) -> None:
    two_d = tmp_path / "slice.zarr"
    zarr.create_array(str(two_d), shape=(40, 40), chunks=(20, 20), dtype="uint8")
    assert str(two_d) in (msg := _bad(tmp_path, two_d))
    assert "2 spatial axes, but the network is 3D" in msg
    complex_ = tmp_path / "complex.zarr"
    zarr.create_array(str(complex_), shape=(8, 8, 8), chunks=(8, 8, 8), dtype="complex64")
    assert str(complex_) in (msg := _bad(tmp_path, complex_))
    assert "complex64" in msg
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("raw", shape=(8, 8, 8), dtype="uint8")
    group.create_array("mask", shape=(8, 8, 8), dtype="uint8")
    msg = _bad(tmp_path, tmp_path / "group.zarr")
    assert "group.zarr" in msg
    assert "mask, raw" in msg
    assert "--array" in msg
    msg = _bad(tmp_path, tmp_path / "group.zarr", array="labels")
    assert "no array 'labels'" in msg
    assert "raw" in msg
    assert "missing.zarr does not exist" in _bad(tmp_path, tmp_path / "missing.zarr")
    (tmp_path / "notzarr.zarr").mkdir()
    assert "notzarr.zarr is not a zarr array or group" in _bad(tmp_path, tmp_path / "notzarr.zarr")


def test_blocks_off_the_grid_or_the_chunks(volume, tmp_path: Path) -> None:
    source, _, _ = volume
    assert "not on the network's pooling grid" in _bad(tmp_path, source, block_shape=(8, 10, 16))
    msg = _bad(tmp_path, source, block_shape=(8, 16, 16), chunks=(8, 12, 16))
    assert "not a multiple of the output chunks (8, 12, 16)" in msg


def test_an_existing_output_is_never_overwritten_without_the_flag(volume, client, tmp_path: Path) -> None:
    source, _, whole = volume
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("the user's file")
    with pytest.raises(VolumeError, match=f"{out} already exists .* --overwrite"):
        run_blockwise(job(str(source), str(out)), network(), progress=False)
    assert (out / "keep.txt").read_text() == "the user's file"
    first = tmp_path / "first.zarr"
    run_blockwise(job(str(source), str(first), output_mode="labels"), network(), scheduler=client, progress=False)
    with pytest.raises(VolumeError, match="another job's output"):  # other settings: not resumed, not replaced
        run_blockwise(job(str(source), str(first), output_mode="labels", flip_axes=(0,)), network(), progress=False)
    report = run_blockwise(job(str(source), str(out)), network(), scheduler=client, overwrite=True, progress=False)
    assert report.computed == report.blocks
    assert not (out / "keep.txt").exists()
    assert np.array_equal(zarr.open_array(str(out / "0"))[:], whole.numpy())


def test_unwritable_outputs_and_the_input_itself(volume, tmp_path: Path) -> None:
    source, _, _ = volume
    before = _tree_digest(source)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for target in (blocker / "out.zarr", Path("/proc/medunet-out.zarr")):
        with pytest.raises(VolumeError, match=str(target)):
            run_blockwise(job(str(source), str(target)), network(), progress=False)
    with pytest.raises(VolumeError, match="into the input"):
        run_blockwise(job(str(source), str(source / "out.zarr")), network(), progress=False, overwrite=True)
    assert _tree_digest(source) == before


def test_the_tiled_result_equals_one_whole_volume_pass_up_to_rounding(volume) -> None:
    """The in-memory tiled result (which the blockwise runs equal bit for bit) against the same network on the
    whole volume in one pass (no tiles): equal up to float32 rounding, the same classes where they are clear."""
    _source, data, whole = volume
    image = torch.from_numpy(job("", "").intensity(data))[None, None]
    with torch.inference_mode():
        one_pass = OverlapTileInferer()(image, network())[0]  # no roi: the whole volume is one tile
    bound = 1e-5 * float(one_pass.abs().max())
    assert float((one_pass - whole).abs().max()) <= bound
    top2 = torch.topk(one_pass, 2, dim=0).values
    ambiguous = (top2[0] - top2[1]) <= 2 * bound
    assert torch.equal(one_pass.argmax(0)[~ambiguous], whole.argmax(0)[~ambiguous])


# The module's last test: it scales the shared cluster (3, then 2, then 1 worker: one worker started, not six).
@pytest.mark.parametrize("workers", [3, 2, 1])
def test_blockwise_is_bit_identical_to_the_in_memory_inferer(
    volume, cluster, client, tmp_path: Path, workers: int
) -> None:
    source, data, whole = volume
    _scale(cluster, client, workers)
    for block in [(8, 16, 16), (16, 8, 24)]:  # two block shapes, the same network tile
        out = tmp_path / f"out-{block[0]}.ome.zarr"
        report = run_blockwise(job(str(source), str(out), block_shape=block), network(), scheduler=client)
        assert report.computed == report.blocks > workers
        logits = zarr.open_array(str(out / "0"))[:]
        assert np.array_equal(logits, whole.numpy()), f"{workers} workers, block {block}"
    if workers == 2:  # tiles in the default (contiguous) memory format: equal to the in-memory inferer's too
        out = tmp_path / "contiguous.ome.zarr"
        run_blockwise(job(str(source), str(out), channels_last=False), network(), scheduler=client, progress=False)
        assert np.array_equal(zarr.open_array(str(out / "0"))[:], _reference(data, channels_last=False).numpy())
