"""Hostile input and crash cases across modules (docs/reliability.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def unchanged(*paths: Path) -> Iterator[None]:
    """Asserts that the files are byte-identical after the block (whether it raised or not)."""
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    try:
        yield
    finally:
        for p, digest in digests.items():
            assert hashlib.sha256(p.read_bytes()).hexdigest() == digest, f"{p} was modified"
