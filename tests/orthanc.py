"""A real Orthanc for the PACS tests and benchmarks, isolated in a private network namespace with only loopback.

Orthanc 1.10 binds every interface, so it runs inside ``ip netns`` where loopback is the only interface;
the test process's main thread enters the same namespace (``setns``) while the PACS tests run, so all test
traffic goes to that namespace's loopback. Orthanc is stopped by its PID and the namespace removed afterwards.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medunet.io.pacs import PacsConfig
from tests.conftest import stop

CLONE_NEWNET = 0x40000000
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
HTTP_PORT, DICOM_PORT, STORAGE_PORT = 18042, 14242, 11113
USER, PASSWORD = "medunet", "s3cret-for-tests"


@dataclass
class Orthanc:
    config: PacsConfig
    http: str
    folder: Path
    namespace: str

    def rest(self, path: str) -> object:
        request = urllib.request.Request(self.http + path)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def _setns(fd: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


@contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Runs the calling thread (and threads it starts) inside the network namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(own)
        os.close(own)
        os.close(target)


def skip_reason() -> str | None:
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; scripts/test.sh does this as root)"
    if not PLUGIN.exists():
        return f"Orthanc's DICOMweb plugin {PLUGIN} is missing (apt-get install orthanc-dicomweb)"
    if shutil.which("ip") is None or os.geteuid() != 0:
        return "a private network namespace needs root and iproute2"
    return None


@contextmanager
def run_orthanc(folder: Path, namespace: str) -> Iterator[Orthanc]:
    """Starts Orthanc in a new network namespace (generated config in ``folder``); stops it by PID on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "Name": "medunet-test-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": HTTP_PORT,
        "DicomPort": DICOM_PORT,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowMove": False,
        "DicomAlwaysAllowGet": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {"medunet": ["MEDUNET", "127.0.0.1", STORAGE_PORT]},
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 2,
        "UnknownSopClassAccepted": True,  # Orthanc 1.10 predates Label Map Segmentation Storage (DICOM 2024)
    }
    (folder / "orthanc.json").write_text(json.dumps(settings, indent=2))
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    proc = None
    try:
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True)
        log = (folder / "orthanc.log").open("w")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "Orthanc", str(folder / "orthanc.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with inside(namespace):
            server = Orthanc(
                PacsConfig(
                    host="127.0.0.1",
                    port=DICOM_PORT,
                    called_aet="ORTHANC",
                    calling_aet="MEDUNET",
                    storage_port=STORAGE_PORT,
                    dicomweb_url=f"http://127.0.0.1:{HTTP_PORT}/dicom-web",
                    username=USER,
                    password=PASSWORD,
                    timeout=20,
                ),
                http=f"http://127.0.0.1:{HTTP_PORT}",
                folder=folder,
                namespace=namespace,
            )
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (folder / "orthanc.log").read_text()[-3000:]
                try:
                    server.rest("/system")
                    break
                except OSError:
                    assert time.monotonic() < deadline, "Orthanc did not answer /system within 60 s"
                    time.sleep(0.3)
        yield server
    finally:
        if proc is not None:
            stop(proc)
        subprocess.run(["ip", "netns", "del", namespace], check=False)
