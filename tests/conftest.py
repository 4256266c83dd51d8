"""Shared fixtures: the real data sets in ../shared/data (or $MEDUNET_DATA_DIR), and a real Orthanc PACS in a
private network namespace (see tests/orthanc.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from tests.orthanc import Orthanc

REPO = Path(__file__).resolve().parents[1]

# The napari tests run on a virtual X screen (pytest-xvfb) with Qt installed, where matplotlib would pick its Qt
# backend and plt.show() (the notebooks call it) would wait for a window to be closed: plots draw off screen.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session", autouse=True)
def _threads_per_worker() -> None:
    """Under pytest-xdist (scripts/test.sh runs two workers), each worker's torch gets its share of the cores, and
    so do the processes its tests start (OMP_NUM_THREADS): the thread pools of two workers that each take every
    core would contend for them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        share = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))
        torch.set_num_threads(min(share, torch.get_num_threads()))


def data_root() -> Path:
    return Path(os.environ.get("MEDUNET_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root} (set MEDUNET_DATA_DIR to the folder holding them)")
    return root


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing (real data set not available here)")
    return path


def dcmtk(tool: str) -> str | None:
    """The path of DCMTK's ``tool`` (echoscu, storescu, ...), or None. pynetdicom installs Python look-alikes of
    the same names into a virtual environment's bin folder (first on PATH when one is active); DCMTK's tools are
    compiled programs, so scripts are passed over."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(tool, path=folder) if folder else None
        if found:
            with open(found, "rb") as fh:
                if fh.read(2) != b"#!":
                    return found
    return None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Stops a process started with ``start_new_session=True`` (its whole group) by PID: TERM, then KILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    from tests.orthanc import run_orthanc, skip_reason  # tests/orthanc.py imports this module

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with run_orthanc(tmp_path_factory.mktemp("orthanc"), f"medunet-pacs-{os.getpid()}") as server:
        yield server


@pytest.fixture
def in_pacs_network(orthanc: Orthanc) -> Iterator[Orthanc]:
    """Each PACS test runs inside Orthanc's namespace (the session fixture's switch covers only its set-up)."""
    from tests.orthanc import inside

    with inside(orthanc.namespace):
        yield orthanc


# Property-based tests: a fixed, reproducible draw in the default run; HYPOTHESIS_PROFILE=fuzz draws many more
# examples at random (a longer fuzzing session, not part of the default suite).
settings.register_profile("default", max_examples=40, deadline=None, derandomize=True, database=None)
settings.register_profile("fuzz", max_examples=2000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def sr_numeric_items(item: Any, code: str) -> list[float]:
    """The numeric values of a DICOM SR's content items named ``code`` (CodeValue), in document order."""
    found = []
    for child in item.get("ContentSequence", []):
        names = child.get("ConceptNameCodeSequence", [])
        if names and names[0].CodeValue == code and "MeasuredValueSequence" in child:
            found.append(float(child.MeasuredValueSequence[0].NumericValue))
        found += sr_numeric_items(child, code)
    return found


def mlflow_runs(uri: str) -> list[Any]:
    """Every run in the MLflow store at ``uri``, of every active experiment."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])
