"""The listener killed (SIGKILL) while it segments, then started again on its work folder: every series it had
received and not finished is segmented and stored; a processed series is not processed again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from pynetdicom import AE

from medunet.apps.pacs_listener import PacsListener
from medunet.data.dicom import write_dicom_series
from medunet.io.dicom_series import scan_dicom_folder
from tests.conftest import REPO, free_port

KILLED_LISTENER = """
import sys, time
from pathlib import Path
from medunet.apps.pacs_listener import PacsListener

class Stuck:  # a segmentation that is still running when the listener is killed
    def segment(self, case, output_dir):
        Path(sys.argv[2]).write_text(str(case))
        time.sleep(600)

listener = PacsListener(Stuck(), None, "MEDUNET", int(sys.argv[3]), ["PUSHER"], sys.argv[1], idle_seconds=0.5)
listener.start()
print("listening", flush=True)
time.sleep(600)
"""


def push(folder: Path, port: int) -> None:
    ae = AE(ae_title="PUSHER")
    first = pydicom.dcmread(next(folder.glob("*.dcm")))
    ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDUNET")
    assert assoc.is_established
    for path in sorted(folder.glob("*.dcm")):
        assert int(assoc.send_c_store(pydicom.dcmread(path)).Status) == 0
    assoc.release()


class Recorder:
    """Segmenter and destination of the restarted listener: records what reaches it."""

    def __init__(self, out: Path) -> None:
        self.out, self.segmented, self.stored = out, [], []

    def segment(self, case: Path, output_dir: Path) -> list[Path]:
        [info] = scan_dicom_folder(case)  # the received series is whole and readable
        self.segmented.append((Path(case).name, len(info.files)))
        seg = Path(output_dir) / f"{Path(case).name}_seg.dcm"
        seg.parent.mkdir(parents=True, exist_ok=True)
        seg.write_bytes(b"SEG")
        return [seg]

    def store(self, files: list[Path]) -> None:
        self.stored += [Path(f).name for f in files]


def restarted(recorder: Recorder, port: int, work: Path) -> PacsListener:
    """A listener started on ``work`` and stopped once it has nothing pending or queued."""
    listener = PacsListener(recorder, recorder, "MEDUNET", port, ["PUSHER"], work, idle_seconds=0.2)  # type: ignore[arg-type]
    listener.start()
    try:
        assert listener.wait_idle(timeout=60)
    finally:
        listener.stop()
    return listener


def test_a_killed_listener_takes_up_what_it_received(tmp_path: Path) -> None:
    port, work, started = free_port(), tmp_path / "listener", tmp_path / "segmenting"
    folders = []
    for i in range(2):
        folder = tmp_path / "src" / f"s{i}"
        write_dicom_series(np.full((12, 10, 6), 100.0 * i, np.float32), folder, modality="MR", rescale=(1.0, 0.0))
        folders.append(folder)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_LISTENER, str(work), str(started), str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "listening"
        for folder in folders:
            push(folder, port)
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the first series never reached segmentation"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    incoming = sorted((work / "incoming").iterdir())
    assert len(incoming) == 2
    # a save the kill interrupted: a half-written temporary of a process that is gone
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    (incoming[1] / f".1.2.3.4.dcm.{dead.pid}.tmp").write_bytes(b"\x00" * 128 + b"DICM half")

    recorder = Recorder(tmp_path / "out")
    listener = restarted(recorder, port, work)
    assert sorted(recorder.segmented) == sorted((f.name, 6) for f in incoming)
    assert {r["status"] for r in listener.results.values()} == {"stored"}
    assert len(recorder.stored) == 2
    assert not [p for p in incoming[1].iterdir() if p.name.endswith(".tmp")]
    assert len(list((work / "results").glob("series-*.json"))) == 2

    # started once more: both series have results, nothing is processed again
    again = Recorder(tmp_path / "out2")
    listener = restarted(again, port, work)
    assert again.segmented == []
    assert set(listener.results) == {str(pydicom.dcmread(next(f.glob("*.dcm"))).SeriesInstanceUID) for f in folders}
