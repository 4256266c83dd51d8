"""Fixtures: a real Orthanc in a private network namespace (see tests/pacs/orthanc.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.pacs.orthanc import Orthanc, inside, run_orthanc, skip_reason


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with run_orthanc(tmp_path_factory.mktemp("orthanc"), f"medunet-pacs-{os.getpid()}") as server:
        yield server


@pytest.fixture
def in_pacs_network(orthanc: Orthanc) -> Iterator[Orthanc]:
    """Each PACS test runs inside Orthanc's namespace (the session fixture's switch covers only its set-up)."""
    with inside(orthanc.namespace):
        yield orthanc
