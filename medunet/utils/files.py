"""Atomic file writes: a reader (a resumed run, a PACS sender, a user) never sees a half-written file.

Every file medunet writes that someone may read while it is written, or after a crash, goes through
:func:`atomic_write`: the content is written to a temporary file in the same folder, flushed to disk and
renamed over the target (``os.replace`` is atomic on POSIX within one file system). A process killed at
any point leaves either the old file or the new one, and at most a hidden ``.<name>.<pid>.tmp`` (or
``.<name>.<pid>.tmp<ext>`` for writers that take a path and choose the format by its extension,
:func:`atomic_write_path`), which the next write to the same target removes once its process is gone.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_move",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_path",
    "atomic_write_text",
    "is_temporary",
    "remove_stale_temporaries",
    "remove_stale_temporaries_in",
    "temporary_name",
]


def temporary_name(target: str | Path, suffix: str = "") -> Path:
    """The temporary sibling a write to ``target`` goes through (hidden, unique per process); ``suffix`` keeps
    the extension for writers that choose the format by it (``.nii.gz``, ``.png``)."""
    path = Path(target)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.tmp(\..+)?$")  # the names temporary_name gives


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is the temporary of an atomic write (:func:`temporary_name`): not a file to read."""
    return bool(_TEMPORARY.match(Path(path).name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _stale(tmp: Path, target_name: str | None = None) -> bool:
    """Whether ``tmp`` is a temporary (of a write to ``target_name``, if given) whose process no longer runs."""
    match = _TEMPORARY.match(tmp.name)
    if match is None or (target_name is not None and match["target"] != target_name):
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not _alive(pid)


def _remove(paths: list[Path]) -> list[Path]:
    for path in paths:
        path.unlink(missing_ok=True)
    return paths


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Removes the temporaries of writes to ``target`` whose process no longer runs (killed mid-write)."""
    path = Path(target)
    return _remove([t for t in path.parent.glob(f".{glob_escape(path.name)}.*.tmp*") if _stale(t, path.name)])


def remove_stale_temporaries_in(folder: str | Path) -> list[Path]:
    """Removes every temporary in ``folder`` whose process no longer runs (a folder of interrupted writes)."""
    return _remove([t for t in sorted(Path(folder).iterdir()) if _stale(t)])


def _os_error(err: BaseException | None) -> OSError | None:
    """The first OSError in ``err``'s chain of causes and contexts."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def atomic_write(target: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Calls ``write(fh)`` on a temporary file next to ``target``, syncs it and renames it to ``target``.

    The parent folder is created; temporaries left by killed writers of ``target`` are removed. On any error
    the temporary file is removed and ``target`` is untouched; an ``OSError`` (disk full, no permission) is
    raised again naming ``target`` and what to do.
    """

    def write_file(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            write(fh)

    return atomic_write_path(target, write_file)


def atomic_write_path(target: str | Path, write: Callable[[Path], Any], suffix: str = "") -> Path:
    """:func:`atomic_write` for writers that take a file name: ``write(tmp)`` writes the temporary file
    ``tmp`` (named with ``suffix``, e.g. ``.nii.gz``, for writers that choose the format by the extension),
    which is then synced and renamed to ``target``."""
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_name(path, suffix)
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        # torch's zip writer reports a full disk as a RuntimeError ("file write failed", or "unexpected pos"
        # raised while handling the OSError) that names no file
        cause = _os_error(err)
        if cause is None and "write" not in str(err).lower():
            raise
        free = shutil.disk_usage(path.parent).free
        raise OSError(
            (cause.errno if cause is not None else None) or errno.EIO,
            f"could not write {path} ({type(err).__name__}: {err}); {free} bytes free on its file system. "
            f"The previous {path.name}, if any, is unchanged; free space (or fix permissions) and run again",
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``target`` atomically."""
    return atomic_write(target, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(target: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """Writes ``obj`` as JSON (with a final newline) to ``target`` atomically."""
    return atomic_write_text(target, json.dumps(obj, **dumps_kwargs) + "\n")


def atomic_move(source: str | Path, target: str | Path) -> Path:
    """Moves ``source`` to ``target`` so that ``target`` appears only complete: a rename on one file system,
    else a copy through :func:`atomic_write_path` (``shutil.move`` would copy in place) and then removal of
    ``source``."""
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, path)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        atomic_write_path(path, lambda tmp: shutil.copyfile(source, tmp))
        Path(source).unlink()
    return path
