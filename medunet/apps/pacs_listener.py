"""A DICOM listener: a storage SCP that segments every series pushed to it and sends the SEG back.

A scanner or PACS node pushes series with C-STORE; no DICOM message says that a series is complete, so a
series counts as complete after a quiet period, then waits in a bounded queue for the one worker that
segments it (:class:`~medunet.apps.segmenter.BundleSegmenter`) and stores the SEG at the destination.

Its work folder is its memory across restarts: ``incoming/series-<uid>/`` holds every received instance
(each written atomically), ``results/series-<uid>.json`` the outcome of a processed series (written
atomically once the SEG is stored, or the failure recorded). A listener killed at any moment and started
again on the same folder segments every received series without a result.
"""

from __future__ import annotations

import json
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.status import Status

from medunet.apps.segmenter import BundleSegmenter, dicom_outputs
from medunet.io.codecs import storage_contexts
from medunet.io.pacs import (
    STATUS_CANNOT_UNDERSTAND,
    PacsClient,
    checked_uid,
    save_received,
    series_folder_name,
    series_uid_of_folder,
    set_tcp_nodelay,
)
from medunet.utils.files import atomic_write_json, is_temporary, remove_stale_temporaries_in

__all__ = ["DEFAULT_IDLE_SECONDS", "PacsListener", "study_folder_name"]

logger = logging.getLogger(__name__)

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
"""C-ECHO (PS3.4 A.4)."""

DEFAULT_IDLE_SECONDS = 2.0
"""Quiet time after which a series counts as complete (the library's and the command line's default)."""


@dataclass
class _Series:
    folder: Path
    calling_aet: str
    last: float = field(default_factory=time.monotonic)


def _instances(folder: Path) -> int:
    """The received instances in a series (or study) folder (temporaries of interrupted saves not counted)."""
    return sum(1 for p in folder.rglob("*.dcm") if not is_temporary(p))


def study_folder_name(study_uid: str) -> str:
    """Folder name for a received study (a multi-series model's unit of work), as :func:`series_folder_name`."""
    return f"study-{checked_uid(study_uid, 'StudyInstanceUID').replace('.', '-')}"


def _uid_of_folder(name: str) -> str | None:
    """The UID a series or study folder name was made from, None for any other name."""
    if name.startswith("study-"):
        try:
            return checked_uid(name.removeprefix("study-").replace("-", "."), "StudyInstanceUID")
        except ValueError:
            return None
    return series_uid_of_folder(name)


class PacsListener:
    """A storage SCP that segments every series pushed to it and sends the SEG to ``destination``.

    - It listens on ``host``:``port`` (loopback by default; ``0.0.0.0`` or the machine's address to be reached by
      a scanner or PACS) and answers C-ECHO.
    - It accepts the uncompressed transfer syntaxes and the compressed ones (JPEG Lossless, JPEG-LS, JPEG 2000,
      RLE, JPEG) whose decoder is installed (:mod:`medunet.io.codecs`; one left out is logged with the package
      that decodes it).
    - Only the AE titles in ``allowed_aets`` may associate (store or echo); others are rejected at association.
    - An instance whose SeriesInstanceUID or SOPInstanceUID is not a DICOM UID (digits and dots) is refused
      with a failure status (0xC000) and nothing is written: those UIDs name files and folders.
    - A series counts as complete when no instance of it arrived for ``idle_seconds``; it then enters a
      bounded FIFO queue (``max_queue``) that one worker empties in arrival order. When the queue is full the
      completion check waits, so a burst is slowed down, never dropped.
    - Up to ``max_associations`` senders may push at the same time.
    - A series sent again after it was processed is segmented again, with every instance received (the
      earlier ones and the new ones); the warning says so and its result counts the ``runs``.
    - A multi-series model (its bundle's ``channel_series``, e.g. T1post and FLAIR) takes a study, not a series:
      instances are then gathered per StudyInstanceUID (``incoming/study-<uid>/series-<uid>/``), a study counts
      as complete after the quiet time, and :attr:`results` are keyed by StudyInstanceUID. A study without a
      series for each channel pattern is recorded as failed, with its series listed.
    - Every outcome (SEG stored, or the error) is recorded in :attr:`results` and in ``results/`` of the work
      folder; on :meth:`start`, series received earlier in the same work folder without a result (a listener
      killed while receiving or segmenting) are processed.
    """

    def __init__(
        self,
        segmenter: BundleSegmenter,
        destination: PacsClient,
        ae_title: str = "MEDUNET",
        port: int = 11112,
        allowed_aets: Sequence[str] = (),
        work_dir: str | Path | None = None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        max_queue: int = 8,
        host: str = "127.0.0.1",
        tcp_nodelay: bool = True,
        max_associations: int = 32,
    ) -> None:
        if not allowed_aets:
            raise ValueError("allowed_aets must name the AE titles that may send series (none given)")
        self.segmenter, self.destination = segmenter, destination
        self.ae_title, self.port, self.host = ae_title, port, host
        self.allowed = {a.strip() for a in allowed_aets}
        self.work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="medunet-listener-"))
        self.idle_seconds = idle_seconds
        self.queue: queue.Queue[str | None] = queue.Queue(maxsize=max_queue)
        self.tcp_nodelay = tcp_nodelay
        self.max_associations = max_associations
        self.results: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, _Series] = {}
        self._queued: dict[str, _Series] = {}
        self._runs: dict[str, int] = {}  # how often each series has been segmented (more than once: sent again)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._by_study = bool(getattr(segmenter, "channel_series", None))

    def _folder_name(self, uid: str) -> str:
        return study_folder_name(uid) if self._by_study else series_folder_name(uid)

    # storage SCP side
    def _on_store(self, event: evt.Event) -> int:
        try:  # both UIDs become paths: a sender's "../" or absolute path must not leave the work folder
            series_uid = checked_uid(event.dataset.get("SeriesInstanceUID"), "SeriesInstanceUID")
            checked_uid(event.dataset.get("SOPInstanceUID"), "SOPInstanceUID")
            uid = (
                checked_uid(event.dataset.get("StudyInstanceUID"), "StudyInstanceUID") if self._by_study else series_uid
            )
        except ValueError as err:
            logger.error("refused an instance from %s: %s", event.assoc.requestor.ae_title, err)
            return STATUS_CANNOT_UNDERSTAND
        with self._lock:
            entry = self._pending.get(uid) or self._queued.get(uid)
            if entry is None:
                if uid in self.results:  # sent again (corrected, completed, or a retry): segmented again
                    logger.warning(
                        "series %s arrived again after it was processed (%s); it will be segmented again with "
                        "every instance received so far",
                        uid,
                        self.results[uid]["status"],
                    )
                    self.results[uid] = {**self.results[uid], "status": "receiving again"}
                folder = self.work / "incoming" / self._folder_name(uid)
                entry = self._pending[uid] = _Series(folder, event.assoc.requestor.ae_title)
                entry.folder.mkdir(parents=True, exist_ok=True)
            target = entry.folder / series_folder_name(series_uid) if self._by_study else entry.folder
            target.mkdir(exist_ok=True)
            save_received(event, target)
            entry.last = time.monotonic()
        return int(Status.SUCCESS)

    def _on_connect(self, event: evt.Event) -> None:
        if self.tcp_nodelay:
            set_tcp_nodelay(event.assoc)

    def _watch(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                done = [uid for uid, s in self._pending.items() if now - s.last >= self.idle_seconds]
                done.sort(key=lambda uid: self._pending[uid].last)
            for uid in done:
                with self._lock:
                    entry = self._pending.pop(uid)
                    self._queued[uid] = entry
                    self.results[uid] = {"status": "queued", "instances": _instances(entry.folder)}
                self.queue.put(uid)  # blocks when full: back-pressure, nothing is dropped
            time.sleep(0.2)

    def _work(self) -> None:
        while True:
            uid = self.queue.get()
            if uid is None:
                return
            with self._lock:
                entry = self._queued.pop(uid)
            count = _instances(entry.folder)  # the folder, not this send: a series sent again keeps earlier ones
            try:
                outputs = self.segmenter.segment(entry.folder, self.work / "output" / self._folder_name(uid))
                seg, reports = dicom_outputs(outputs)
                self.destination.store([*seg, *reports])
                self._record(
                    uid,
                    {
                        "status": "stored",
                        "instances": count,
                        "seg": [str(p) for p in seg],
                        "reports": [str(p) for p in reports],
                    },
                )
            except Exception as err:
                logger.error("series %s failed: %s", uid, err)
                self._record(uid, {"status": "failed", "instances": count, "error": str(err)})
            finally:
                self.queue.task_done()

    def _record(self, uid: str, result: dict[str, Any]) -> None:
        """The outcome of a series, kept in memory and (atomically) in the work folder; ``runs`` counts how often
        it was segmented (more than once when it was sent again)."""
        # counted here, when a run ends: a series sent again while its first run is queued or running is then
        # counted once per run too
        self._runs[uid] = self._runs.get(uid, 0) + 1
        result = {**result, "runs": self._runs[uid]}
        key = "study_uid" if self._by_study else "series_uid"
        atomic_write_json(self.work / "results" / f"{self._folder_name(uid)}.json", {key: uid, **result})
        self.results[uid] = result

    def _recover(self) -> list[str]:
        """Reads the outcomes of an earlier listener on this work folder and takes up every series it received
        but did not finish (they wait the quiet time like a new arrival, then are queued)."""
        key = "study_uid" if self._by_study else "series_uid"
        prefix = "study-" if self._by_study else "series-"
        for path in sorted((self.work / "results").glob(f"{prefix}*.json")):
            try:
                record = json.loads(path.read_text())
                done = str(record.pop(key))
                self.results[done] = record
                self._runs[done] = int(record.get("runs", 1))
            except (ValueError, KeyError, TypeError, AttributeError):
                logger.warning("%s is not a listener result (unreadable); its series is processed again", path)
        recovered = []
        for folder in sorted((self.work / "incoming").glob(f"{prefix}*")):
            uid = _uid_of_folder(folder.name)
            if uid is None or uid in self.results or not folder.is_dir():
                continue
            for inner in [folder, *(f for f in folder.iterdir() if f.is_dir())]:
                remove_stale_temporaries_in(inner)  # of saves that a kill interrupted
            self._pending[uid] = _Series(folder, "(received before a restart)")
            recovered.append(uid)
        if recovered:
            logger.warning(
                "taking up %d series received before the listener stopped and not yet processed: %s",
                len(recovered),
                ", ".join(recovered),
            )
        return recovered

    def start(self) -> None:
        self._recover()
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = storage_contexts()  # compressed syntaxes too, where a decoder is installed
        ae.add_supported_context(VERIFICATION_SOP_CLASS)  # C-ECHO: the first thing a PACS administrator tries
        ae.require_called_aet = True
        ae.require_calling_aet = sorted(self.allowed)
        ae.maximum_associations = self.max_associations  # concurrent senders; beyond that they are refused
        self._server = ae.start_server(
            (self.host, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, self._on_connect)],
        )
        for target in (self._watch, self._work):
            thread = threading.Thread(target=target, daemon=True, name=f"medunet-listener-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        logger.info(
            "listening as %s on %s:%d (accepting %s)", self.ae_title, self.host, self.port, sorted(self.allowed)
        )

    def wait_idle(self, timeout: float) -> bool:
        """Waits until nothing is pending or queued (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._pending) or any(r["status"] == "queued" for r in self.results.values())
            if not busy and self.queue.unfinished_tasks == 0:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        self.queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
