"""Atomic writes: the target is either the old or the new content, never a partial file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import BinaryIO

import pytest

from medunet.utils.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    is_temporary,
    remove_stale_temporaries_in,
    temporary_name,
)


def test_writes_create_folders_and_replace_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    atomic_write_json(target, {"epoch": 1})
    atomic_write_json(target, {"epoch": 2}, indent=2)
    assert json.loads(target.read_text()) == {"epoch": 2}
    atomic_write_text(tmp_path / "note.txt", "é")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "é"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))

    def broken(fh: BinaryIO) -> None:
        fh.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert not temporary_name(target).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_temporaries_are_recognised_by_name(tmp_path: Path) -> None:
    target = tmp_path / "1.2.3.dcm"
    assert is_temporary(temporary_name(target))
    assert is_temporary(temporary_name(tmp_path / "case_seg.nii.gz", ".nii.gz"))
    assert not is_temporary(target)
    assert not is_temporary(tmp_path / ".hidden")
    assert not is_temporary(tmp_path / "notes.tmp")


def test_stale_temporaries_of_a_folder_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    stale = [tmp_path / f".1.2.3.dcm.{dead.pid}.tmp", tmp_path / f".case_seg.nii.gz.{dead.pid}.tmp.nii.gz"]
    kept = [tmp_path / ".x.dcm.1.tmp", tmp_path / "1.2.3.dcm", tmp_path / ".hidden"]  # pid 1 runs; not temporaries
    for path in stale + kept:
        path.write_bytes(b"x")
    assert remove_stale_temporaries_in(tmp_path) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
