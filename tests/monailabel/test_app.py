"""apps/monailabel: a real MONAI Label server (in .venv-monailabel, scripts/setup_monailabel.sh) on loopback with
medunet's app, asked over its REST API as 3D Slicer's and OHIF's clients ask it: ``/info`` lists medunet's models,
``/infer/<model>`` returns the label image of ``medunet segment`` on the same image (0 voxels differ) for a 2D image
of a local studies folder and a DICOM study on the test Orthanc (DICOMweb); bad requests get HTTP errors that say
what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from medunet.apps.segment import segment
from tests.conftest import REPO, free_port, require, stop
from tests.napari_plugin.test_layers import nuclei_image
from tests.orthanc import PASSWORD, USER, Orthanc

SERVER_PYTHON = REPO / ".venv-monailabel" / "bin" / "python"
QUIET_TASKS = {f"MONAI_LABEL_TASKS_{task}": "false" for task in ("TRAIN", "STRATEGY", "SCORING", "BATCH_INFER")}


@contextmanager
def monailabel(studies: str, log: Path, **env: str) -> Iterator[str]:
    """A MONAI Label server with medunet's app on a free loopback port; stopped by PID on exit."""
    if not SERVER_PYTHON.exists():
        pytest.skip(f"{SERVER_PYTHON} is missing: run `bash scripts/setup_monailabel.sh` (scripts/test.sh does)")
    port = free_port()
    command = [str(SERVER_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(REPO / "apps" / "monailabel"),
               "--studies", studies, "--host", "127.0.0.1", "--port", str(port),
               "--conf", "models", "nuclei,brain_tumour_mr"]  # fmt: skip
    environment = {**os.environ, **QUIET_TASKS, "MEDUNET_PYTHON": sys.executable, **env}
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/info/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"MONAI Label did not start ({proc.poll()=}); its log:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        stop(proc)


def call(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_local_folder_info_infer_and_bad_requests(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    image = nuclei_image(tmp_path)
    (studies / "cells.png").write_bytes(image.read_bytes())
    with monailabel(str(studies), tmp_path / "server.log") as url:
        status, body = call(url + "/info/")
        assert status == 200
        info = json.loads(body)
        assert info["name"] == "medunet"
        assert set(info["models"]) == {"nuclei", "brain_tumour_mr"}
        assert info["models"]["nuclei"]["dimension"] == 2
        assert info["models"]["brain_tumour_mr"]["dimension"] == 3
        assert info["models"]["nuclei"]["labels"] == {"nucleus interior": 1, "nucleus border": 2}
        assert "DSB 2018" in info["models"]["nuclei"]["description"]
        status, body = call(url + "/infer/nuclei?image=cells&output=image", "POST")
        assert status == 200, body[:500]
        (tmp_path / "label.png").write_bytes(body)
        served = np.asarray(Image.open(tmp_path / "label.png"))
        segment("nuclei", studies / "cells.png", tmp_path / "cli", progress=False)
        expected = np.asarray(Image.open(tmp_path / "cli" / "cells_seg.png"))
        assert served.shape == expected.shape
        assert int((served != expected).sum()) == 0
        assert served.max() > 0
        # bad requests: an unknown model, an image the datastore lacks, a 2D image for a study model
        status, body = call(url + "/infer/no_such_model?image=cells&output=image", "POST")
        assert status == 404
        assert (
            "no model 'no_such_model' in medunet's MONAI Label app; models: ['brain_tumour_mr', 'nuclei']"
            in body.decode()
        )
        status, body = call(url + "/infer/nuclei?image=not_there&output=image", "POST")
        assert status == 404
        assert "no image 'not_there' in the datastore" in body.decode()
        status, body = call(url + "/infer/brain_tumour_mr?image=cells&output=image", "POST")
        assert status == 422
        assert "reads a DICOM study's series" in body.decode()
        assert call(url + "/info/")[0] == 200  # the server is still up


def test_a_dicom_study_from_orthanc_is_segmented_as_medunet_segment_does(
    in_pacs_network: Orthanc, shared_data: Path, tmp_path: Path
) -> None:
    """The brain tumour model (T1post + FLAIR as channels) asked with the T1post series over DICOMweb: the app fetches
    the study's FLAIR series too, and the label image equals `medunet segment` on the study folder."""
    from medunet.io.pacs import PacsClient

    study = require(shared_data / "tcia_pgbm001_dicom")
    files = sorted(p for name in ("T1post", "FLAIRreg") for p in (study / name).glob("*.dcm"))
    PacsClient(in_pacs_network.config).store(files)
    t1 = pydicom.dcmread(next((study / "T1post").glob("*.dcm")), stop_before_pixels=True)
    env = {
        "MONAI_LABEL_DICOMWEB_USERNAME": USER,
        "MONAI_LABEL_DICOMWEB_PASSWORD": PASSWORD,
        "MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI": "false",  # medunet reads the DICOM series itself
        "MONAI_LABEL_DICOMWEB_SEARCH_FILTER": json.dumps({"Modality": "MR"}),
        "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp_path / "cache"),
    }
    with monailabel(in_pacs_network.http + "/dicom-web", tmp_path / "server.log", **env) as url:
        status, body = call(url + f"/infer/brain_tumour_mr?image={t1.SeriesInstanceUID}&output=image", "POST")
        assert status == 200, body[:500]
    (tmp_path / "label.nii.gz").write_bytes(body)
    served = nib.load(tmp_path / "label.nii.gz")
    report = segment("brain_tumour_mr", study, tmp_path / "cli", progress=False)
    expected = nib.load(next(p for p in report.outputs[str(study)] if p.endswith("_seg.nii.gz")))
    assert served.shape == expected.shape
    np.testing.assert_allclose(served.affine, expected.affine, atol=1e-4)
    labels = np.asarray(served.dataobj)
    assert int(np.asarray(expected.dataobj).sum()) > 0  # not two empty label images
    differ = int((labels != np.asarray(expected.dataobj)).sum())
    assert differ == 0, f"{differ} voxels differ"
    # the picture for docs/viewers.md: the served label over its T1post slice with the most tumour
    from medunet.io import load_image
    from medunet.utils.overlay import overlay_png

    t1post = np.asarray(load_image(study / "T1post"))[0]  # (x, y, z), the label grid
    z = int(labels.reshape(-1, labels.shape[-1]).sum(0).argmax())
    folder = Path(os.environ.get("MEDUNET_SCREENSHOTS") or tmp_path)
    overlay_png(
        t1post[None, ..., z : z + 1], labels[None, ..., z : z + 1], None, folder / "monailabel_brain_tumour.png"
    )
