"""Crashes while writing: a full disk names the output and keeps the previous checkpoint loadable; temporaries
of a killed writer are removed by the next write. (Kill-and-resume of a whole training:
tests/bundles/test_bundles.py::test_resume_after_sigkill_continues_at_next_epoch.)"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medunet.handlers.checkpoint import atomic_save
from medunet.utils.files import atomic_write, temporary_name


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root and mount; skipped where the machine does not allow it)."""
    mount = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_names_the_file_and_keeps_the_previous_checkpoint(small_disk: Path) -> None:
    target = small_disk / "checkpoint_epoch=1.pt"
    small = {"model": torch.arange(1000, dtype=torch.float32)}
    atomic_save(small, target)
    with pytest.raises(OSError, match=r"could not write .*checkpoint_epoch=1\.pt .* bytes free .* previous") as info:
        atomic_save({"model": torch.zeros(1_000_000)}, target)  # 4 MB into 512 KiB
    assert str(small_disk) in str(info.value)
    assert torch.equal(torch.load(target, weights_only=True)["model"], small["model"])
    assert not list(small_disk.glob(".*.tmp"))


def test_a_full_disk_reported_by_the_writer_is_named(tmp_path: Path) -> None:
    target = tmp_path / "best_model.pt"
    target.write_bytes(b"previous")

    def full(_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"could not write .*best_model\.pt .*No space left") as info:
        atomic_write(target, full)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous"


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "best_model.pt"
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait()  # a pid that has exited
    stale = target.with_name(f".{target.name}.{proc.pid}.tmp")
    stale.write_bytes(b"half a checkpoint")
    alive = target.with_name(f".{target.name}.1.tmp")  # pid 1 runs: its write may be in progress
    alive.write_bytes(b"being written")
    other = tmp_path / ".other.pt.999999999.tmp"
    other.write_bytes(b"another target's")
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert alive.exists()
    assert other.exists()
    assert not temporary_name(target).exists()
