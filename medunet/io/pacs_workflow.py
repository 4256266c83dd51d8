"""Research-PACS workflows: segment a study from the PACS and store the SEG back; a listener that segments
every series pushed to it."""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt

from medunet.engines.segmenter import BundleSegmenter
from medunet.io.pacs import PacsClient, PacsError, _no_delay, _write_atomically

__all__ = ["PacsListener", "choose_series", "segment_study", "series_folder_name"]

logger = logging.getLogger(__name__)

_NOT_IMAGES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "REG"}


def series_folder_name(series_uid: str) -> str:
    """Folder name for a received series: no dots, because output file names derive from it (MONAI's
    SaveImage would take the part after a dot for a suffix)."""
    return f"series-{series_uid.replace('.', '-')}"


def choose_series(
    series: Sequence[Dataset],
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
) -> Dataset:
    """The image series to segment; raises ``PacsError`` listing the candidates when not exactly one fits."""
    import re

    candidates = [s for s in series if str(getattr(s, "Modality", "")) not in _NOT_IMAGES]
    if series_uid:
        candidates = [s for s in candidates if str(s.SeriesInstanceUID) == series_uid]
    if modality:
        candidates = [s for s in candidates if str(getattr(s, "Modality", "")).upper() == modality.upper()]
    if description:
        candidates = [
            s for s in candidates if re.search(description, str(getattr(s, "SeriesDescription", "")), re.IGNORECASE)
        ]
    if len(candidates) == 1:
        return candidates[0]
    listing = "\n".join(
        f"  - {s.SeriesInstanceUID} {getattr(s, 'Modality', '?')} {str(getattr(s, 'SeriesDescription', ''))!r}"
        for s in series
    )
    raise PacsError(
        f"{len(candidates)} series match; choose one with --series-uid, --modality or --description:\n{listing}"
    )


def segment_study(
    client: PacsClient,
    segmenter: BundleSegmenter,
    study_uid: str,
    work_dir: str | Path | None = None,
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    retrieve: str = "move",
    store: bool = True,
) -> dict[str, Any]:
    """Query, retrieve, segment and store back one series of a study.

    Returns a summary: the series segmented, the files written, and the stored SEG's UIDs.
    """
    series = client.find_series(study_uid)
    if not series:
        raise PacsError(f"study {study_uid} not found on {client.config.describe()}")
    chosen = choose_series(series, series_uid, modality, description)
    uid = str(chosen.SeriesInstanceUID)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="medunet-pacs-"))
    folder = work / "input" / series_folder_name(uid)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    fetch = {"move": client.move_series, "get": client.get_series, "wado": client.wado_series}[retrieve]
    files = fetch(study_uid, uid, folder)
    timings["retrieve"] = time.perf_counter() - start
    start = time.perf_counter()
    outputs = segmenter.segment(folder, work / "output")
    timings["segment"] = time.perf_counter() - start
    seg = next((p for p in outputs if p.suffix == ".dcm"), None)
    if seg is None:
        raise PacsError(f"inference on series {uid} wrote no DICOM SEG (outputs: {[p.name for p in outputs]})")
    summary: dict[str, Any] = {
        "study_uid": study_uid,
        "series_uid": uid,
        "instances": len(files),
        "outputs": [str(p) for p in outputs],
        "seg_series_uid": str(pydicom.dcmread(seg, stop_before_pixels=True).SeriesInstanceUID),
        "stored": False,
    }
    if store:
        start = time.perf_counter()
        client.store([seg])
        timings["store"] = time.perf_counter() - start
        summary["stored"] = True
    summary["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return summary


@dataclass
class _Series:
    folder: Path
    calling_aet: str
    last: float = field(default_factory=time.monotonic)
    count: int = 0


class PacsListener:
    """A storage SCP that segments every series pushed to it and sends the SEG to ``destination``.

    - Only the AE titles in ``allowed_aets`` may store; others are rejected at association.
    - A series counts as complete when no instance of it arrived for ``idle_seconds``; it then enters a
      bounded FIFO queue (``max_queue``) that one worker empties in arrival order. When the queue is full the
      completion check waits, so a burst is slowed down, never dropped.
    - Up to ``max_associations`` senders may push at the same time.
    - Every outcome (SEG stored, or the error) is recorded in :attr:`results`.
    """

    def __init__(
        self,
        segmenter: BundleSegmenter,
        destination: PacsClient,
        ae_title: str = "MEDUNET",
        port: int = 11112,
        allowed_aets: Sequence[str] = (),
        work_dir: str | Path | None = None,
        idle_seconds: float = 2.0,
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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None

    # storage SCP side
    def _on_store(self, event: evt.Event) -> int:
        uid = str(event.dataset.SeriesInstanceUID)
        with self._lock:
            entry = self._pending.get(uid) or self._queued.get(uid)
            if entry is None:
                if uid in self.results:
                    logger.warning("series %s arrived again after it was processed; ignored", uid)
                    return 0x0000
                folder = self.work / "incoming" / series_folder_name(uid)
                entry = self._pending[uid] = _Series(folder, event.assoc.requestor.ae_title)
                entry.folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(event, entry.folder)
            entry.count += 1
            entry.last = time.monotonic()
        return 0x0000

    def _on_connect(self, event: evt.Event) -> None:
        if self.tcp_nodelay:
            _no_delay(event.assoc)

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
                    self.results[uid] = {"status": "queued", "instances": entry.count}
                self.queue.put(uid)  # blocks when full: back-pressure, nothing is dropped
            time.sleep(0.2)

    def _work(self) -> None:
        while True:
            uid = self.queue.get()
            if uid is None:
                return
            with self._lock:
                entry = self._queued.pop(uid)
            try:
                outputs = self.segmenter.segment(entry.folder, self.work / "output" / uid)
                seg = [p for p in outputs if p.suffix == ".dcm"]
                self.destination.store(seg)
                self.results[uid] = {"status": "stored", "instances": entry.count, "seg": [str(p) for p in seg]}
            except Exception as err:
                logger.error("series %s failed: %s", uid, err)
                self.results[uid] = {"status": "failed", "instances": entry.count, "error": str(err)}
            finally:
                self.queue.task_done()

    def start(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = StoragePresentationContexts
        ae.require_called_aet = True
        ae.require_calling_aet = sorted(self.allowed)
        ae.maximum_associations = self.max_associations  # concurrent senders; beyond that they are refused
        self._server = ae.start_server(
            (self.host, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_ACSE_RECV, self._on_connect)],
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
