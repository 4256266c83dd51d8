"""A research-PACS client: DIMSE (pynetdicom) and DICOMweb (dicomweb-client).

C-ECHO, C-FIND (study and series level), retrieval of a series by C-GET or by C-MOVE to medunet's own
storage SCP, C-STORE; DICOMweb QIDO-RS / WADO-RS / STOW-RS with HTTP basic authentication.

Every association sets TCP_NODELAY on its socket: without it each small DIMSE message can wait 40-90 ms
for Nagle's algorithm and delayed acknowledgements. Credentials come from a JSON file or environment
variables (:meth:`PacsConfig.from_env`), never from code, and are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

__all__ = ["PacsClient", "PacsConfig", "PacsError"]

logger = logging.getLogger(__name__)


class PacsError(RuntimeError):
    """A PACS operation failed; the message says which operation, against which peer, and why."""


def _no_delay(assoc: Association) -> None:
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class PacsConfig:
    """Where the PACS is and who we are.

    Attributes:
        host, port, called_aet: the PACS's DIMSE address and AE title.
        calling_aet: medunet's AE title (must be known to the PACS).
        storage_port: port of medunet's storage SCP (C-MOVE destination, listener).
        dicomweb_url: e.g. ``http://127.0.0.1:8042/dicom-web``; ``username`` / ``password`` for basic auth.
        tcp_nodelay: set TCP_NODELAY on DIMSE sockets (on by default).
        timeout: seconds for connections and DIMSE responses.
    """

    host: str = "127.0.0.1"
    port: int = 4242
    called_aet: str = "ORTHANC"
    calling_aet: str = "MEDUNET"
    storage_port: int = 11112
    dicomweb_url: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tcp_nodelay: bool = True
    timeout: float = 30.0

    @classmethod
    def from_file(cls, path: str | Path) -> PacsConfig:
        """From a JSON file with the field names above (keep it out of version control: it holds credentials)."""
        values = json.loads(Path(path).read_text())
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"{path}: unknown PACS settings {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**values)

    @classmethod
    def from_env(cls, prefix: str = "MEDUNET_PACS_") -> PacsConfig:
        """From ``MEDUNET_PACS_HOST``, ``_PORT``, ``_CALLED_AET``, ``_CALLING_AET``, ``_STORAGE_PORT``,
        ``_DICOMWEB_URL``, ``_USERNAME``, ``_PASSWORD``."""
        kwargs: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            value = os.environ.get(prefix + name.upper())
            if value is not None:
                kwargs[name] = (
                    int(value) if f.type in ("int", int) else float(value) if f.type in ("float", float) else value
                )
        return cls(**kwargs)

    def describe(self) -> str:
        """The peer, without credentials (for messages and logs)."""
        return f"{self.called_aet}@{self.host}:{self.port}"


class PacsClient:
    """DIMSE and DICOMweb operations against one PACS (see :class:`PacsConfig`)."""

    def __init__(self, config: PacsConfig) -> None:
        self.config = config

    # -- DIMSE ---------------------------------------------------------------------------------------
    def _ae(self) -> AE:
        ae = AE(ae_title=self.config.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.config.timeout
        ae.connection_timeout = self.config.timeout
        return ae

    @contextmanager
    def _association(self, ae: AE, **kwargs: Any) -> Iterator[Association]:
        try:
            assoc = ae.associate(self.config.host, self.config.port, ae_title=self.config.called_aet, **kwargs)
        except OSError as err:
            raise PacsError(f"cannot reach PACS {self.config.describe()}: {err}") from err
        if not assoc.is_established:
            reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            raise PacsError(
                f"association with PACS {self.config.describe()} {reason} (is it running, and does it know the AE title "
                f"{self.config.calling_aet!r}?)"
            )
        if self.config.tcp_nodelay:
            _no_delay(assoc)
        try:
            yield assoc
        finally:
            assoc.release()

    def echo(self) -> bool:
        """C-ECHO; True on success."""
        ae = self._ae()
        ae.add_requested_context(Verification)
        with self._association(ae) as assoc:
            status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == 0

    def find(self, level: str, **keys: str) -> list[Dataset]:
        """C-FIND at ``"STUDY"`` or ``"SERIES"`` level; ``keys`` are DICOM keywords to match (empty = return)."""
        if level not in ("STUDY", "SERIES"):
            raise ValueError(f"level={level!r} is not supported; valid options are 'STUDY', 'SERIES'")
        query = Dataset()
        query.QueryRetrieveLevel = level
        returned = (
            ["StudyInstanceUID", "StudyDate", "StudyDescription", "ModalitiesInStudy"]
            if level == "STUDY"
            else [
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "Modality",
                "SeriesDescription",
                "NumberOfSeriesRelatedInstances",
            ]
        )
        for keyword in returned:
            setattr(query, keyword, "")
        for keyword, value in keys.items():
            setattr(query, keyword, value)
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        results: list[Dataset] = []
        with self._association(ae) as assoc:
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                if not status:
                    raise PacsError(f"C-FIND on {self.config.describe()}: no response (timeout)")
                code = int(status.Status)
                if code in (0xFF00, 0xFF01) and identifier is not None:
                    results.append(identifier)
                elif code != 0:
                    raise PacsError(f"C-FIND on {self.config.describe()} failed with status 0x{code:04X}")
        return results

    def find_studies(self, **keys: str) -> list[Dataset]:
        return self.find("STUDY", **keys)

    def find_series(self, study_uid: str, **keys: str) -> list[Dataset]:
        return self.find("SERIES", StudyInstanceUID=study_uid, **keys)

    def _series_query(self, study_uid: str, series_uid: str) -> Dataset:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        return query

    def _require_series(self, study_uid: str, series_uid: str) -> None:
        if not self.find("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid):
            raise PacsError(f"series {series_uid} of study {study_uid} not found on {self.config.describe()}")

    def get_series(self, study_uid: str, series_uid: str, dest: str | Path) -> list[Path]:
        """Retrieves a series by C-GET into ``dest`` (created); returns the written files.

        Files are written under temporary names and renamed when complete; on failure none is left.
        """
        self._require_series(study_uid, series_uid)
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        ae = self._ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for context in StoragePresentationContexts[:120]:  # the association allows 128 contexts in all
            syntax = str(context.abstract_syntax)
            ae.add_requested_context(syntax)
            roles.append(build_role(syntax, scp_role=True))

        def on_store(event: evt.Event) -> int:
            written.append(_write_atomically(event, out))
            return 0x0000

        try:
            with self._association(ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
                final = None
                for status, _ in assoc.send_c_get(
                    self._series_query(study_uid, series_uid), StudyRootQueryRetrieveInformationModelGet
                ):
                    final = status
                _check_retrieve(final, "C-GET", self.config, series_uid, written)
        except PacsError:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return written

    def move_series(self, study_uid: str, series_uid: str, dest: str | Path) -> list[Path]:
        """Retrieves a series by C-MOVE to medunet's own storage SCP (``calling_aet`` on ``storage_port``, which the
        PACS must know), written into ``dest``."""
        self._require_series(study_uid, series_uid)
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        lock = threading.Lock()

        def on_store(event: evt.Event) -> int:
            path = _write_atomically(event, out)
            with lock:
                written.append(path)
            return 0x0000

        scp = self._ae()
        scp.supported_contexts = StoragePresentationContexts
        handlers: list[Any] = [(evt.EVT_C_STORE, on_store)]
        if self.config.tcp_nodelay:
            handlers.append((evt.EVT_ACSE_RECV, lambda event: _no_delay(event.assoc)))
        server = scp.start_server(("127.0.0.1", self.config.storage_port), block=False, evt_handlers=handlers)
        assert server is not None  # block=False returns the server
        try:
            ae = self._ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            with self._association(ae) as assoc:
                final = None
                for status, _ in assoc.send_c_move(
                    self._series_query(study_uid, series_uid),
                    self.config.calling_aet,
                    StudyRootQueryRetrieveInformationModelMove,
                ):
                    final = status
            _check_retrieve(final, "C-MOVE", self.config, series_uid, written)
        except PacsError:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        finally:
            server.shutdown()
        return written

    def store(self, paths: Sequence[str | Path]) -> int:
        """C-STORE of DICOM files; returns how many were stored, raises if any failed."""
        datasets = [pydicom.dcmread(p) for p in paths]
        ae = self._ae()
        for uid in sorted({str(ds.SOPClassUID) for ds in datasets}):
            ae.add_requested_context(
                uid, [str(ds.file_meta.TransferSyntaxUID) for ds in datasets if str(ds.SOPClassUID) == uid][:1]
            )
        stored = 0
        with self._association(ae) as assoc:
            for path, ds in zip(paths, datasets):
                status = assoc.send_c_store(ds)
                if not status or int(status.Status) != 0:
                    code = f"0x{int(status.Status):04X}" if status else "no response"
                    raise PacsError(f"C-STORE of {path} to {self.config.describe()} failed ({code})")
                stored += 1
        return stored

    # -- DICOMweb ------------------------------------------------------------------------------------
    def _web(self) -> Any:
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session_from_auth
        from requests.auth import HTTPBasicAuth

        if not self.config.dicomweb_url:
            raise PacsError("no dicomweb_url configured for DICOMweb access")
        session = None
        if self.config.username is not None:
            session = create_session_from_auth(HTTPBasicAuth(self.config.username, self.config.password or ""))
        return DICOMwebClient(url=self.config.dicomweb_url, session=session)

    def qido_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the series of a study (DICOM JSON)."""
        return list(self._web().search_for_series(study_instance_uid=study_uid))

    def wado_series(self, study_uid: str, series_uid: str, dest: str | Path) -> list[Path]:
        """WADO-RS: retrieves a series into ``dest``."""
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for ds in self._web().retrieve_series(study_uid, series_uid):
            paths.append(save_atomically(ds, out))
        return paths

    def stow(self, paths: Sequence[str | Path]) -> None:
        """STOW-RS of DICOM files."""
        self._web().store_instances([pydicom.dcmread(p) for p in paths])


def save_atomically(ds: Dataset, out: Path) -> Path:
    """Writes ``<out>/<SOPInstanceUID>.dcm`` under a temporary name and renames it, so no partial file is seen."""
    path = out / f"{ds.SOPInstanceUID}.dcm"
    tmp = path.with_name(f".{path.name}.tmp")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return path


def _write_atomically(event: evt.Event, out: Path) -> Path:
    """Saves the dataset of a C-STORE request (see :func:`save_atomically`)."""
    ds = event.dataset
    ds.file_meta = event.file_meta
    return save_atomically(ds, out)


def _check_retrieve(
    status: Dataset | None, what: str, config: PacsConfig, series_uid: str, written: list[Path]
) -> None:
    if status is None or not status:
        raise PacsError(f"{what} of series {series_uid} from {config.describe()}: no response")
    code = int(status.Status)
    failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
    if code not in (0x0000, 0xFF00) or failed:
        raise PacsError(
            f"{what} of series {series_uid} from {config.describe()} failed (status 0x{code:04X}, {failed} failed)"
        )
    if not written:
        raise PacsError(f"{what}: series {series_uid} not found on {config.describe()} (no instance received)")
