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
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import STATUS_PENDING, STATUS_SUCCESS, Status, code_to_category

from medunet.io.codecs import decodable_transfer_syntaxes, storage_contexts
from medunet.utils.enums import QueryLevel, RetrieveMethod, look_up
from medunet.utils.files import atomic_write

__all__ = [
    "STATUS_CANNOT_UNDERSTAND",
    "PacsClient",
    "PacsConfig",
    "PacsError",
    "checked_uid",
    "save_atomically",
    "save_received",
    "series_folder_name",
    "set_tcp_nodelay",
    "store_handler",
]

logger = logging.getLogger(__name__)


class PacsError(RuntimeError):
    """A PACS operation failed; the message says which operation, against which peer, and why."""


def set_tcp_nodelay(assoc: Association) -> None:
    """Sets TCP_NODELAY on an association's socket (requestor or acceptor side; see the module docstring)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as err:  # the peer closed the connection already: nothing to tune
            logger.debug("TCP_NODELAY not set: %s", err)


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
        """From a JSON file with the field names above (keep it out of version control: it holds credentials).

        Raises:
            FileNotFoundError: no such file. ValueError: not a JSON object, an unknown setting, or a value of
                the wrong type; the message names the file and the setting.
        """
        source = Path(path)
        valid = sorted(cls.__dataclass_fields__)
        try:
            values = json.loads(source.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"PACS settings file {source} does not exist; give a JSON file with the settings {valid}, "
                "or set MEDUNET_PACS_* environment variables instead"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON ({err.msg}, line {err.lineno}); fix the file") from None
        if not isinstance(values, dict):
            raise ValueError(f"{source}: must hold a JSON object with the settings {valid}")
        unknown = set(values) - set(valid)
        if unknown:
            raise ValueError(f"{source}: unknown PACS settings {sorted(unknown)}; valid: {valid}")
        for name, value in values.items():
            kind = _field_kind(cls.__dataclass_fields__[name])
            if not _has_kind(value, kind):
                raise ValueError(
                    f"{source}: setting {name!r} = {_shown(name, value)} must be {_EXAMPLES.get(kind, 'a string')}"
                )
        return cls(**values)

    @classmethod
    def from_env(cls, prefix: str = "MEDUNET_PACS_") -> PacsConfig:
        """From ``MEDUNET_PACS_HOST``, ``_PORT``, ``_CALLED_AET``, ``_CALLING_AET``, ``_STORAGE_PORT``,
        ``_DICOMWEB_URL``, ``_USERNAME``, ``_PASSWORD``, ``_TCP_NODELAY``, ``_TIMEOUT``.

        Raises:
            ValueError: a variable that does not parse as its setting's type; the message names the variable
                (never its value when it is a credential).
        """
        kwargs: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            variable = prefix + name.upper()
            value = os.environ.get(variable)
            if value is None:
                continue
            kind = _field_kind(f)
            try:
                kwargs[name] = _parse_setting(value, kind)
            except ValueError:
                raise ValueError(
                    f"environment variable {variable}={_shown(name, value)} is not a valid {kind}; set it to {_EXAMPLES.get(kind, 'a value')} "
                    f"or unset it to use the default ({f.default!r})"
                ) from None
        return cls(**kwargs)

    def describe(self) -> str:
        """The peer, without credentials (for messages and logs)."""
        return f"{self.called_aet}@{self.host}:{self.port}"


LABELMAP_SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
"""Label Map Segmentation Storage: the SOP class of a label-map SEG (DICOM 2024), unknown to older PACS."""

_SECRETS = {"username", "password"}
_EXAMPLES = {
    "int": "a whole number, e.g. 4242",
    "float": "a number of seconds, e.g. 30",
    "bool": "true or false (1/0 in the environment)",
}


def _shown(name: str, value: Any) -> str:
    """A setting's value for an error message: credentials are never shown."""
    return "(hidden)" if name in _SECRETS else repr(value)


def _field_kind(f: Any) -> str:
    """A ``PacsConfig`` field's type as its name: ``"int"``, ``"float"``, ``"bool"`` or ``"str"`` (optional text)."""
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return name if name in ("int", "float", "bool") else "str"


def _has_kind(value: Any, kind: str) -> bool:
    """Whether a JSON value fits a setting of ``kind`` (a number for a float, null for optional text)."""
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return value is None or isinstance(value, str)


def _parse_setting(value: str, kind: str) -> Any:
    """A setting's text (from the environment) as its field's type, named as a string (``"int"``, ...)."""
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    return value


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
            refused = [str(cx.abstract_syntax) for cx in assoc.rejected_contexts]
            if refused and not assoc.accepted_contexts:  # it answered, but takes none of these objects
                names = ", ".join(
                    sorted({uid if UID(uid).name == uid else f"{UID(uid).name} ({uid})" for uid in refused})
                )
                message = f"PACS {self.config.describe()} accepts none of the requested SOP classes: {names}"
                if LABELMAP_SEG_STORAGE in refused:
                    message += (
                        ". A label-map SEG needs a PACS that knows Label Map Segmentation Storage (DICOM 2024; "
                        'Orthanc: "UnknownSopClassAccepted": true), or write a binary one (--seg-type binary)'
                    )
                raise PacsError(message)
            reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            raise PacsError(
                f"association with PACS {self.config.describe()} {reason} (is it running, and does it know the AE title "
                f"{self.config.calling_aet!r}?)"
            )
        if self.config.tcp_nodelay:
            set_tcp_nodelay(assoc)
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

    def find(self, level: str | QueryLevel, **keys: str) -> list[Dataset]:
        """C-FIND at ``"STUDY"`` or ``"SERIES"`` level; ``keys`` are DICOM keywords to match (empty = return)."""
        kind = look_up(level, QueryLevel, "level")
        query = Dataset()
        query.QueryRetrieveLevel = kind.value
        returned = (
            ["StudyInstanceUID", "StudyDate", "StudyDescription", "ModalitiesInStudy"]
            if kind == QueryLevel.STUDY
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
                category = code_to_category(code)
                if category == STATUS_PENDING and identifier is not None:  # a match
                    results.append(identifier)
                elif category != STATUS_SUCCESS:
                    raise PacsError(f"C-FIND on {self.config.describe()} failed with status 0x{code:04X}")
        return results

    def find_studies(self, **keys: str) -> list[Dataset]:
        return self.find(QueryLevel.STUDY, **keys)

    def find_series(self, study_uid: str, **keys: str) -> list[Dataset]:
        return self.find(QueryLevel.SERIES, StudyInstanceUID=study_uid, **keys)

    def _series_query(self, study_uid: str, series_uid: str) -> Dataset:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        return query

    def _require_series(self, study_uid: str, series_uid: str) -> None:
        if not self.find(QueryLevel.SERIES, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid):
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
        syntaxes = decodable_transfer_syntaxes()  # a PACS that stores compressed data need not transcode it
        for context in StoragePresentationContexts[:120]:  # the association allows 128 contexts in all
            syntax = str(context.abstract_syntax)
            ae.add_requested_context(syntax, syntaxes)
            roles.append(build_role(syntax, scp_role=True))

        on_store = store_handler(out, written)
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
        on_store = store_handler(out, written)

        scp = self._ae()
        scp.supported_contexts = storage_contexts()
        handlers: list[Any] = [(evt.EVT_C_STORE, on_store)]
        if self.config.tcp_nodelay:
            handlers.append((evt.EVT_ACSE_RECV, lambda event: set_tcp_nodelay(event.assoc)))
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

    def retrieve_series(
        self, study_uid: str, series_uid: str, dest: str | Path, method: str | RetrieveMethod = RetrieveMethod.MOVE
    ) -> list[Path]:
        """Retrieves a series into ``dest`` by ``method`` (see :class:`~medunet.utils.enums.RetrieveMethod`):
        C-MOVE (:meth:`move_series`), C-GET (:meth:`get_series`) or WADO-RS (:meth:`wado_series`).

        Raises:
            ValueError: an unknown ``method`` (the message lists the valid ones).
            PacsError: the retrieval failed.
        """
        fetch = {
            RetrieveMethod.MOVE: self.move_series,
            RetrieveMethod.GET: self.get_series,
            RetrieveMethod.WADO: self.wado_series,
        }[look_up(method, RetrieveMethod, "retrieve")]
        return fetch(study_uid, series_uid, dest)

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


_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def checked_uid(value: object, attribute: str) -> str:
    """``value`` as a DICOM UID (PS3.5 9.1: digits and dots, at most 64 characters), or a ValueError.

    UIDs from a peer become file and folder names; anything else (``../``, an absolute path, a separator, an
    empty value) could write outside the work folder, so it is refused rather than cleaned up.
    """
    text = str(value if value is not None else "").strip("\x00 ")
    if len(text) > 64 or not _UID.fullmatch(text):
        raise ValueError(
            f"{attribute} {text[:80]!r} is not a DICOM UID (digits and dots, at most 64 characters); medunet names "
            "files after UIDs and refuses this one. Fix the sender's data (or anonymiser) to write valid UIDs."
        )
    return text


def series_folder_name(series_uid: str) -> str:
    """Folder name for a received series (the UID checked by :func:`checked_uid`): no dots, because output file
    names derive from it (MONAI's SaveImage would take the part after a dot for a suffix)."""
    return f"series-{checked_uid(series_uid, 'SeriesInstanceUID').replace('.', '-')}"


def series_uid_of_folder(name: str) -> str | None:
    """The SeriesInstanceUID a :func:`series_folder_name` was made from, None for any other name."""
    if not name.startswith("series-"):
        return None
    uid = name.removeprefix("series-").replace("-", ".")
    try:
        return checked_uid(uid, "SeriesInstanceUID")
    except ValueError:
        return None


def save_atomically(ds: Dataset, out: str | Path) -> Path:
    """Writes ``<out>/<SOPInstanceUID>.dcm`` under a temporary name and renames it, so no partial file is seen.

    Raises:
        ValueError: the SOPInstanceUID is not a UID (see :func:`checked_uid`); nothing is written.
    """
    name = checked_uid(ds.get("SOPInstanceUID"), "SOPInstanceUID")
    return atomic_write(Path(out) / f"{name}.dcm", lambda fh: ds.save_as(fh, enforce_file_format=True))


def save_received(event: evt.Event, out: str | Path) -> Path:
    """Saves the dataset of a C-STORE request (a pynetdicom ``EVT_C_STORE`` event) into ``out`` (see
    :func:`save_atomically`)."""
    ds = event.dataset
    ds.file_meta = event.file_meta
    return save_atomically(ds, out)


STATUS_CANNOT_UNDERSTAND = 0xC000
"""C-STORE failure status (PS3.4 B.2.3) answered for a dataset medunet refuses, e.g. one with a UID that is
not a UID."""


def store_handler(out: str | Path, written: list[Path]) -> Any:
    """An ``EVT_C_STORE`` handler that saves into ``out`` and appends to ``written`` (under a lock: a storage
    SCP may run one thread per association); a refused dataset is logged and answered with a failure status
    instead of Success."""
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        try:
            path = save_received(event, out)
        except ValueError as err:
            logger.error("refused an instance from %s: %s", event.assoc.requestor.ae_title, err)
            return STATUS_CANNOT_UNDERSTAND
        with lock:
            written.append(path)
        return int(Status.SUCCESS)

    return on_store


def _check_retrieve(
    status: Dataset | None, what: str, config: PacsConfig, series_uid: str, written: list[Path]
) -> None:
    if status is None or not status:
        raise PacsError(f"{what} of series {series_uid} from {config.describe()}: no response")
    code = int(status.Status)
    failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
    if code_to_category(code) not in (STATUS_SUCCESS, STATUS_PENDING) or failed:
        raise PacsError(
            f"{what} of series {series_uid} from {config.describe()} failed (status 0x{code:04X}, {failed} failed)"
        )
    if not written:
        raise PacsError(f"{what}: series {series_uid} not found on {config.describe()} (no instance received)")
