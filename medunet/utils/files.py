"""Atomic file writes: a reader (a resumed run, a PACS sender, a user) never sees a half-written file.

Every file medunet writes that someone may read while it is written, or after a crash, goes through
:func:`atomic_write`: the content is written to a temporary file in the same folder, flushed to disk and
renamed over the target (``os.replace`` is atomic on POSIX within one file system). A process killed at
any point leaves either the old file or the new one, and at most a hidden ``.<name>.<pid>.tmp``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "temporary_name"]


def temporary_name(target: str | Path) -> Path:
    """The temporary sibling a write to ``target`` goes through (hidden, unique per process)."""
    path = Path(target)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(target: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Calls ``write(fh)`` on a temporary file next to ``target``, syncs it and renames it to ``target``.

    The parent folder is created. On any error the temporary file is removed and ``target`` is untouched.
    """
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``target`` atomically."""
    return atomic_write(target, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(target: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """Writes ``obj`` as JSON (with a final newline) to ``target`` atomically."""
    return atomic_write_text(target, json.dumps(obj, **dumps_kwargs) + "\n")
