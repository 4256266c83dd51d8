"""Shared fixtures: the real data sets in ../shared/data (or $MEDUNET_DATA_DIR)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
