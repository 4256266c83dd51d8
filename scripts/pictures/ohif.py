"""The OHIF picture of docs/viewers.md: a label-map DICOM SEG written by medunet, shown by OHIF.

The TCIA study's tumour mask (``../shared/data/tcia_pgbm001_dicom``) is written as a label-map SEG with
:func:`medunet.io.dicom_seg.write_dicom_seg` and stored with the T1post series in an Orthanc (the tests' one, in a
private network namespace); OHIF (the built viewer of the npm package ``@ohif/app``) is served beside a proxy to
Orthanc's DICOMweb on loopback, and Chromium, driven by Playwright, opens the study, loads the SEG and takes the
screenshot. Needs root (the namespace), Orthanc, Debian's chromium, node and npm; the viewer and Playwright are
fetched with npm into ``.cache/pictures`` on the first run.

    python scripts/pictures/ohif.py [--out docs/images/ohif_labelmap_seg.png]
"""

from __future__ import annotations

import argparse
import base64
import http.server
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

OHIF = "@ohif/app@3.13.2"
PLAYWRIGHT = "playwright-core@1"
SEG_DESCRIPTION = "medunet label-map SEG"

APP_CONFIG = """window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'Orthanc (medunet test)',
        name: 'orthanc',
        wadoUriRoot: '%(root)s/dicom-web',
        qidoRoot: '%(root)s/dicom-web',
        wadoRoot: '%(root)s/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
"""


def fetch_tools(cache: Path) -> tuple[Path, Path]:
    """OHIF's built viewer and Playwright, fetched with npm into ``cache`` once."""
    viewer, modules = cache / "ohif", cache / "node"
    if not (viewer / "index.html").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", OHIF, "--silent"], cwd=cache, check=True, capture_output=True)
        archive = next(cache.glob("ohif-app-*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(cache / "unpacked", filter="data")
        shutil.move(cache / "unpacked" / "package" / "dist", viewer)
        archive.unlink()
    if not (modules / "node_modules" / "playwright-core").is_dir():
        modules.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(modules), PLAYWRIGHT], check=True)
    return viewer, modules


def serve(viewer: Path, orthanc_http: str, auth: str, port: int) -> http.server.ThreadingHTTPServer:
    """OHIF's files, and ``/dicom-web/...`` passed on to Orthanc with its credentials (same origin: no CORS)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(viewer), **kwargs)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/dicom-web/"):
                request = urllib.request.Request(orthanc_http + self.path)
                request.add_header("Authorization", f"Basic {auth}")
                if self.headers.get("Accept"):
                    request.add_header("Accept", self.headers["Accept"])
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        body, status, kind = response.read(), response.status, response.headers.get("Content-Type")
                except urllib.error.HTTPError as err:
                    body, status, kind = err.read(), err.code, err.headers.get("Content-Type")
                self.send_response(status)
                if kind:
                    self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if not (viewer / self.path.split("?")[0].lstrip("/")).is_file():
                self.path = "/index.html"  # the single-page app's routes
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "ohif_labelmap_seg.png"))
    parser.add_argument("--cache", default=str(REPO / ".cache" / "pictures"))
    parser.add_argument("--port", type=int, default=18300)
    args = parser.parse_args()

    import numpy as np
    import pydicom

    from medunet.io import load_image
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.io.dicom_seg import write_dicom_seg
    from medunet.io.pacs import PacsClient
    from tests.conftest import data_root
    from tests.orthanc import PASSWORD, USER, inside, run_orthanc, skip_reason

    reason = skip_reason()
    if reason:
        raise SystemExit(f"ohif picture: {reason}")
    study = data_root() / "tcia_pgbm001_dicom"
    if not study.is_dir():
        raise SystemExit(f"ohif picture: {study} is missing (set MEDUNET_DATA_DIR to the data sets' folder)")
    viewer, modules = fetch_tools(Path(args.cache))
    (viewer / "app-config.js").write_text(APP_CONFIG % {"root": f"http://127.0.0.1:{args.port}"})
    work = Path(args.cache) / "work"
    shutil.rmtree(work, ignore_errors=True)
    labels = (np.asarray(load_image(study / "MaskTumor")[0]) > 0).astype(np.uint8)
    seg = write_dicom_seg(labels, study / "T1post", work / "seg.dcm", [SegmentSpec(1, "tumour")],
                          seg_type="labelmap", series_description=SEG_DESCRIPTION)  # fmt: skip
    study_uid = str(pydicom.dcmread(seg, stop_before_pixels=True).StudyInstanceUID)
    with run_orthanc(work / "orthanc", "medunet-pictures") as orthanc, inside(orthanc.namespace):
        client = PacsClient(orthanc.config)
        client.store(sorted((study / "T1post").glob("*.dcm")))
        client.store([seg])
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        server = serve(viewer, orthanc.http, auth, args.port)
        try:
            url = f"http://127.0.0.1:{args.port}/viewer?StudyInstanceUIDs={study_uid}"
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            # an ES module finds its imports in the node_modules beside it
            script = shutil.copy(Path(__file__).with_name("ohif_screenshot.mjs"), modules)
            done = subprocess.run(["node", str(script), url, SEG_DESCRIPTION, str(Path(args.out).resolve())],
                                  cwd=modules, check=False)  # fmt: skip
        finally:
            server.shutdown()
    if done.returncode:
        raise SystemExit(f"ohif picture: the browser step failed (exit status {done.returncode}); see above")
    print(f"ohif picture: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
