"""Names from outside never become paths: hostile UIDs pushed to the listener, or met on retrieval, write nothing
outside the work folder and the sender is told of the failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pynetdicom import AE

from medunet.apps.pacs_listener import PacsListener
from medunet.data.dicom import write_dicom_series
from medunet.io.pacs import STATUS_CANNOT_UNDERSTAND, PacsClient, PacsConfig, checked_uid, save_atomically
from tests.conftest import free_port

HOSTILE = [
    "../../escaped",
    "/tmp/medunet-absolute",
    "1.2.3/../../../escaped",
    "..",
    "",
    "1.2.3\\..\\escaped",
    "1.2.a",
    "1..2",
    "1.2." + "3" * 70,
]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.1", "0", "1.2.3.4.5.6.7.8.9.10"])
def test_valid_uids_pass(uid: str) -> None:
    assert checked_uid(uid, "SOPInstanceUID") == uid


@pytest.mark.parametrize("uid", HOSTILE)
def test_hostile_uids_are_refused_with_the_attribute_named(uid: str) -> None:
    with pytest.raises(ValueError, match=r"SeriesInstanceUID .* is not a DICOM UID .* Fix the sender"):
        checked_uid(uid, "SeriesInstanceUID")


def _series(folder: Path) -> list[pydicom.Dataset]:
    volume = np.random.default_rng(0).integers(0, 400, size=(12, 10, 2)).astype(np.float32)
    write_dicom_series(volume, folder, spacing=(1.0, 1.0, 3.0), modality="MR", rescale=(1.0, 0.0))
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


@pytest.mark.parametrize("uid", ["../../escaped", "/tmp/medunet-absolute-sop"])
def test_saving_an_instance_with_a_hostile_sop_uid_writes_nothing(tmp_path: Path, uid: str) -> None:
    ds = _series(tmp_path / "src")[0]
    ds.SOPInstanceUID = uid
    out = tmp_path / "work" / "in"
    out.mkdir(parents=True)
    before = _files(tmp_path)
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        save_atomically(ds, out)
    assert _files(tmp_path) == before
    assert not Path("/tmp/medunet-absolute-sop.dcm").exists()


class _NeverCalled:
    """The listener's segmenter and destination: no hostile series may ever reach them."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def segment(self, *args: Any) -> list[Path]:
        self.calls.append(args)
        return []


def test_listener_refuses_hostile_uids_and_writes_nothing_outside(tmp_path: Path) -> None:
    port = free_port()
    datasets = _series(tmp_path / "src")
    absolute = Path(f"/tmp/medunet-abs-{port}")  # short: the sending side refuses SOP UIDs over 64 characters
    hostile = {
        "SeriesInstanceUID": ["../../../escaped", str(tmp_path / "absolute"), str(absolute), "1.2.3/../../x", ""],
        # (an empty SOPInstanceUID cannot even be sent: the C-STORE request's Affected SOP Instance UID needs one)
        "SOPInstanceUID": ["../../../escaped", str(absolute), "1.2.3/../../x"],
    }
    attacks = []
    for attribute, uids in hostile.items():
        for uid in uids:
            ds = pydicom.dcmread(tmp_path / "src" / Path(datasets[0].filename).name)
            setattr(ds, attribute, uid)
            attacks.append((attribute, uid, ds))
    segmenter = _NeverCalled()
    work = tmp_path / "deep" / "listener"
    listener = PacsListener(
        segmenter,  # type: ignore[arg-type]  # a stand-in: it must never be called
        PacsClient(PacsConfig(port=1)),
        "MEDUNET",
        port,
        ["PUSHER"],
        work,
        idle_seconds=0.3,
    )
    before = _files(tmp_path)
    listener.start()
    try:
        ae = AE(ae_title="PUSHER")
        ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDUNET")
        assert assoc.is_established
        statuses = {(a, u): int(assoc.send_c_store(ds).Status) for a, u, ds in attacks}
        # a valid instance in the same association is still stored: the refusal is per instance
        valid_status = int(assoc.send_c_store(datasets[1]).Status)
        assoc.release()
        assert listener.wait_idle(timeout=30)
    finally:
        listener.stop()
    assert statuses == {key: STATUS_CANNOT_UNDERSTAND for key in statuses}, statuses
    assert valid_status == 0
    new = _files(tmp_path) - before
    assert new, "the valid instance should have been written"
    assert all(work in p.parents for p in new), sorted(map(str, new))
    for path in (tmp_path / "absolute", absolute):
        assert not path.exists()
        assert not path.with_name(path.name + ".dcm").exists()
    assert not any(p.name.startswith("escaped") for p in Path("/").glob("*"))
    # the one valid series was segmented into a folder named from its (checked) UID
    assert [Path(c[1]).name for c in segmenter.calls] == [f"series-{datasets[1].SeriesInstanceUID.replace('.', '-')}"]
