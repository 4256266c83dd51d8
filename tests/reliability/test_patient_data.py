"""Patient data stays in the DICOM objects: a patient name, ID and birth date planted in a DICOM series appear in
no file name, no log line, no MLflow param, tag, metric or artifact, and in no output but the DICOM SEG (which
must carry them to be filed with the patient). Credentials in a tracking URI are not written to the run's
records."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medunet.data.dicom import write_dicom_series
from medunet.engines import write_run_config
from medunet.io import load_image
from tests.bundles.test_bundles import ENV, bundle_cmd
from tests.conftest import REPO

PLANTED = {"PatientName": "Zyxplanted^Qwertyname", "PatientID": "PID-ZYX-4711", "PatientBirthDate": "19010203"}
NEEDLES = [b"Zyxplanted", b"Qwertyname", b"PID-ZYX-4711", b"19010203"]
TINY = {
    "features": [4, 8, 16],
    "pool_sizes": [[2, 2, 1], [2, 2, 1]],
    "output_tile": [16, 16, 8],
    "intensity_preset": "mr",
    "device": "cpu",
}


def planted_series(folder: Path) -> Path:
    volume = np.random.default_rng(0).integers(0, 300, size=(40, 36, 10)).astype(np.float32)
    volume[10:28, 8:24, 2:8] += 400
    files = write_dicom_series(volume, folder, modality="MR", rescale=(1.0, 0.0), patient_id=PLANTED["PatientID"])
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = PLANTED["PatientName"], PLANTED["PatientBirthDate"]
        ds.save_as(path)
    return folder


def leaks(root: Path, text: str) -> list[str]:
    """Every place under ``root`` (file and folder names, file contents, gzip contents) and in ``text`` that
    holds a planted value; DICOM files are skipped (they are the patient's records)."""
    found = [f"log: {n.decode()}" for n in NEEDLES if n in text.encode()]
    for path in sorted(root.rglob("*")):
        found += [f"name: {path}" for n in NEEDLES if n.decode() in path.name]
        if not path.is_file() or path.suffix == ".dcm":
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        found += [f"content: {path} holds {n.decode()}" for n in NEEDLES if n in data]
    return found


def command(workflow: str, config: str, log: Path, **overrides: object) -> str:
    cmd = bundle_cmd(workflow, config, **{k: json.dumps(v) for k, v in {**TINY, **overrides}.items()})
    with log.open("w") as fh:
        done = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=ENV, timeout=600, check=False)
    text = log.read_text()
    assert done.returncode == 0, text[-4000:]
    return text


def test_the_search_finds_planted_values_wherever_they_are(tmp_path: Path) -> None:
    (tmp_path / "Zyxplanted_seg.nii.gz").write_bytes(gzip.compress(b"nothing"))
    (tmp_path / "params.json").write_text('{"patient": "PID-ZYX-4711"}')
    (tmp_path / "mask.nii.gz").write_bytes(gzip.compress(b"descrip 19010203"))
    (tmp_path / "case_seg.dcm").write_bytes(b"Zyxplanted")  # the DICOM objects are the patient's
    assert len(leaks(tmp_path, "INFO wrote Qwertyname")) == 4


@pytest.mark.slow
def test_no_planted_patient_data_outside_the_dicom_objects(tmp_path: Path) -> None:
    data = tmp_path / "data"
    series = planted_series(data / "case1")
    image = load_image(series)
    label = (image[0].numpy() > 300).astype(np.uint8)
    nib.save(nib.Nifti1Image(label, image.affine.numpy()), str(data / "case1_label.nii.gz"))
    case = {"image": "case1", "label": "case1_label.nii.gz"}
    (data / "dataset.json").write_text(json.dumps({"training": [case], "validation": [case]}))

    train_out = tmp_path / "train"
    text = command(
        "training", "bundles/unet3d/configs/train.json", tmp_path / "train.log",
        dataset_dir=str(data), output_dir=str(train_out), epochs=1, val_output_tile=TINY["output_tile"],
        num_workers=0,
    )  # fmt: skip
    assert (train_out / "mlflow" / "mlflow.db").is_file()
    assert list((train_out / "mlflow").rglob("config_merged.json")), "the run's artifacts were not logged"

    infer_out = tmp_path / "inference"
    text += command(
        "inference", "bundles/unet3d/configs/inference.json", tmp_path / "inference.log",
        input_dir=str(data), ckpt_path=str(train_out / "best_model.pt"), output_dir=str(infer_out),
    )  # fmt: skip
    seg = infer_out / "case1_seg.dcm"
    assert (infer_out / "case1_seg.nii.gz").is_file()
    assert seg.is_file()
    assert pydicom.dcmread(seg).PatientID == PLANTED["PatientID"]  # the SEG is filed with its patient

    assert not leaks(tmp_path / "train", text) + leaks(infer_out, "")


def test_credentials_in_a_tracking_uri_are_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [
        "run", "training", "--config_file", "bundles/unet2d/configs/train.json",
        "--tracking_uri", "http://alice:s3cret-pw@127.0.0.1:5000/", "--output_dir", str(tmp_path),
    ]  # fmt: skip
    monkeypatch.chdir(REPO)
    text = Path(str(write_run_config(tmp_path, argv))).read_text()
    assert "s3cret-pw" not in text
    assert "http://alice:***@127.0.0.1:5000/" in text
