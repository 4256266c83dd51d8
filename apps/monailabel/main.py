"""medunet's models as a MONAI Label app, for 3D Slicer's and OHIF's MONAI Label clients.

Start it (after ``bash scripts/setup.sh`` and ``bash scripts/setup_monailabel.sh``)::

    .venv-monailabel/bin/monailabel start_server --app apps/monailabel --studies <folder or DICOMweb URL> \\
        --host 127.0.0.1 --port 8000 [--conf models nuclei,brain_tumour_mr] [--conf bundles /path/to/bundle]

Every shipped model (``bundles/*`` with ``models/model.pt``) is an inference task of the same name; ``--conf
bundles`` adds bundle folders (comma-separated; the task is named after the folder), ``--conf models`` keeps only
the named ones, ``--conf device cpu|cuda`` chooses the device. A task runs ``medunet segment`` on the image that
MONAI Label hands it (a file of the studies folder, or the DICOM series that the DICOMweb datastore fetched), so its
label image is the one ``medunet segment`` writes, voxel for voxel. A model that reads several series of a study as
channels (``brain_tumour_mr``: T1post and FLAIR) is asked with one of them; the task fetches the study's other series
from the same DICOMweb server and returns the label image on the grid of the model's reference series (the first).

MONAI Label runs in its own environment (``.venv-monailabel``: its server needs pydicom 2 and numpy 1, medunet
pydicom 3), so this app imports nothing of medunet: it runs medunet with medunet's interpreter (``--conf
medunet_python``, else the environment variable ``MEDUNET_PYTHON``, else the repository's ``.venv``) in one
long-lived worker process (``python -m medunet.apps.worker``), which segments the requests one at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
LABEL_SUFFIXES = ("_seg.nii.gz", "_seg.nii", "_seg.png", "_seg.tif")


def model_card_summary(folder: Path) -> str:
    """The model card's first line of text after its title, as ``medunet segment --list`` shows it
    (``medunet.apps.segment.model_summary``, restated: this environment cannot import medunet)."""
    card = folder / "docs" / "README.md"
    if card.is_file():
        for line in card.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                return line.strip()
    return f"medunet bundle {folder.name}"


class MedunetWorker:
    """``python -m medunet.apps.worker`` in medunet's environment, started on first use and kept: medunet and MONAI
    are imported once, not per request. Requests are serialised (one segmentation at a time, as one medunet
    segment would run); a worker that died is started again for the next request, and its last log lines go into
    the error."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.process: subprocess.Popen[str] | None = None
        self.log = Path(tempfile.mkdtemp(prefix="medunet-worker-")) / "worker.log"
        self.lock = threading.Lock()

    def start(self) -> None:
        """Starts the worker unless it runs (it imports medunet while the caller goes on)."""
        if self.process is None or self.process.poll() is not None:
            with open(self.log, "a") as log:
                self.process = subprocess.Popen(
                    [self.python, "-m", "medunet.apps.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=log, text=True,
                )  # fmt: skip

    def segment(self, model: str, source: Path, output: Path, settings: dict[str, Any]) -> list[Path]:
        request = {"model": model, "input": str(source), "output": str(output), "settings": settings}
        with self.lock:
            self.start()
            assert self.process.stdin is not None
            assert self.process.stdout is not None
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
                line = self.process.stdout.readline()
            except OSError:
                line = ""
            if not line:  # it died: report why, start a new one next time
                self.process.wait(timeout=30)
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise MONAILabelException(
                    MONAILabelError.SERVER_ERROR,
                    f"medunet's worker ({self.python}) ended (exit status {self.process.returncode}): "
                    + " / ".join(tail),
                )
        reply = json.loads(line)
        if "error" in reply:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(reply["error"]))
        return [Path(p) for p in reply["outputs"]]


class MedunetInfer(InferTask):
    """One medunet bundle as a MONAI Label segmentation task (runs ``medunet segment`` on the request's image)."""

    def __init__(self, folder: Path, device: str | None, app: MedunetApp) -> None:
        config = json.loads((folder / "configs" / "inference.json").read_text(encoding="utf-8"))
        metadata_path = folder / "configs" / "metadata.json"
        metadata = json.loads(metadata_path.read_text(encoding="utf-8")) if metadata_path.is_file() else {}
        codes = metadata.get("segment_codes") or {}
        labels = {str(v.get("label", k)): int(k) for k, v in codes.items()} or {"foreground": 1}
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=int(config.get("spatial_dims", 2)),
            description=model_card_summary(folder),
            config={"device": device or "bundle default"},
        )
        self.folder, self.device, self.app = folder, device, app
        self.channel_series: list[str] | None = config.get("channel_series")

    def is_valid(self) -> bool:
        return (self.folder / "models" / "model.pt").is_file()

    def __call__(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        image = Path(str(request["image"]))
        start = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="medunet-monailabel-"))
        try:
            source = self._study_of(image, work) if self.channel_series and image.is_dir() else image
            out = work / "out"
            settings = {"device": self.device} if self.device else {}
            logger.info("medunet segment %s with %s", source, self.folder.name)
            try:
                self.app.worker.segment(str(self.folder), source, out, settings)
            except MONAILabelException as err:
                raise MONAILabelException(err.error, f"{self.folder.name} on {image.name}: {err.msg}") from None
            written = sorted(out.iterdir()) if out.is_dir() else []
            label = next((p for p in written if p.name.endswith(LABEL_SUFFIXES)), None)
            if label is None:
                raise MONAILabelException(
                    MONAILabelError.INVALID_INPUT,
                    f"medunet segment with {self.folder.name} wrote no label image for {image.name} "
                    f"(outputs: {[p.name for p in written]})",
                )
            # the label file outlives this folder: MONAI Label sends it and then deletes it
            suffix = ".nii.gz" if label.name.endswith(".nii.gz") else label.suffix
            handle, result = tempfile.mkstemp(prefix=f"{self.folder.name}-", suffix=suffix)
            os.close(handle)
            shutil.copyfile(label, result)
            table = next((p for p in written if p.name.endswith("_instances.csv")), None)
            instances = max(0, len(table.read_text(encoding="utf-8").splitlines()) - 1) if table else None
            params = {
                "model": self.folder.name,
                "medunet_outputs": [p.name for p in written],
                "instances": instances,
                "latencies": {"total": round(time.perf_counter() - start, 3)},
            }
            return result, params
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _study_of(self, series_dir: Path, work: Path) -> Path:
        """A folder with the study's series that the model reads as channels: the one asked for and the others of
        its study, fetched from the DICOMweb server the datastore reads (a local folder: its sibling folders)."""
        import pydicom

        first = next((p for p in sorted(series_dir.iterdir()) if p.is_file()), None)
        if first is None:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"{series_dir}: no DICOM files")
        study_uid = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
        study = work / "study"
        study.mkdir()
        client = getattr(self.app.datastore(), "_client", None)
        if client is None:  # a local studies folder: the series folders beside the one asked for
            for sibling in series_dir.parent.iterdir():
                if sibling.is_dir():
                    (study / sibling.name).symlink_to(sibling.resolve(), target_is_directory=True)
            return study
        from monailabel.datastore.utils.dicom import dicom_web_download_series

        patterns = [re.compile(p) for p in self.channel_series or []]
        for series in client.search_for_series(study_uid, fields=["SeriesDescription"]):
            uid = series["0020000E"]["Value"][0]
            description = str((series.get("0008103E") or {}).get("Value", [""])[0])
            if any(p.search(description) for p in patterns):
                dicom_web_download_series(study_uid, uid, str(study / uid), client)
        return study


class MedunetApp(MONAILabelApp):
    """medunet's shipped models (and ``--conf bundles`` folders) as MONAI Label inference tasks."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.python = (
            conf.get("medunet_python") or os.environ.get("MEDUNET_PYTHON") or str(REPO / ".venv" / "bin" / "python")
        )
        if not Path(self.python).exists():
            raise FileNotFoundError(
                f"medunet's Python {self.python} does not exist: run `bash scripts/setup.sh` in {REPO}, or give "
                "medunet's interpreter with --conf medunet_python /path/to/python (or MEDUNET_PYTHON)"
            )
        self.device = conf.get("device")
        folders = {p.name: p for p in sorted((REPO / "bundles").iterdir()) if (p / "models" / "model.pt").is_file()}
        for extra in filter(None, (conf.get("bundles") or "").split(",")):
            folder = Path(extra.strip()).resolve()
            if not (folder / "configs" / "inference.json").is_file():
                raise ValueError(f"--conf bundles: {folder} is not a medunet bundle folder (no configs/inference.json)")
            folders[folder.name] = folder
        wanted = [m.strip() for m in (conf.get("models") or "").split(",") if m.strip()]
        unknown = sorted(set(wanted) - set(folders))
        if unknown:
            raise ValueError(f"--conf models: unknown {unknown}; available: {sorted(folders)}")
        self.folders = {name: folders[name] for name in (wanted or folders)}
        self.worker = MedunetWorker(self.python)
        self.worker.start()  # medunet is imported while MONAI Label starts, not at the first request
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medunet",
            description="medunet: the original U-Net (2D and 3D) with exact overlap-tile inference",
            version="0.1.0",
        )

    def _download_dcmqi_tools(self) -> None:
        """Nothing: MONAI Label downloads dcmqi (to turn submitted labels into DICOM SEG) from the internet whenever a
        DICOMweb datastore opens without it on PATH. medunet's tasks need no conversion (medunet reads the DICOM series
        itself and writes its own SEG with highdicom: ``medunet segment``, ``medunet pacs``), and a server must start
        where the internet is out of reach. Submitting an edited label back to the DICOMweb server through MONAI Label
        needs dcmqi's ``itkimage2segimage`` on PATH (installed by whoever wants that; docs/viewers.md)."""

    def init_infers(self) -> dict[str, InferTask]:
        return {name: MedunetInfer(folder, self.device, self) for name, folder in self.folders.items()}

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """MONAI Label's inference, with its refusals as HTTP errors that say what went wrong (MONAI Label answers
        them with a bare 500): an unknown model 404, an image the datastore does not hold 404, an image medunet
        cannot segment 422; each message names the model or image and lists what is available."""
        from fastapi import HTTPException

        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(
                status_code=404,
                detail=f"no model {model!r} in medunet's MONAI Label app; models: {sorted(self._infers)}",
            )
        image = request.get("image")
        store = datastore or self.datastore()
        if isinstance(image, str) and not os.path.exists(image) and not store.get_image_uri(image):
            raise HTTPException(
                status_code=404,
                detail=f"no image {image!r} in the datastore ({store.name()}); GET /datastore/?output=all lists them",
            )
        try:
            return dict(super().infer(request, datastore))
        except MONAILabelException as err:  # medunet's worker died (500), or medunet refused the input (422)
            status = 500 if err.error == MONAILabelError.SERVER_ERROR else 422
            raise HTTPException(status_code=status, detail=str(err.msg)) from None
