"""End to end against Orthanc: segment a study and store the SEG back; the listener under a burst."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pynetdicom import AE

from medunet.data.dicom import write_dicom_series
from medunet.engines.segmenter import BundleSegmenter
from medunet.io import load_image
from medunet.io.dicom_seg import read_dicom_seg
from medunet.io.pacs import PacsClient, PacsConfig, PacsError
from medunet.io.pacs_workflow import PacsListener, segment_study
from medunet.networks import ValidUNet
from tests.conftest import REPO, require
from tests.pacs.orthanc import STORAGE_PORT, Orthanc

SMALL = {
    "features": [4, 8, 16, 32],
    "pool_sizes": [[2, 2, 1], [2, 2, 1], [2, 2, 1]],
    "tile_output": [64, 64, 24],
    "device": "cpu",
}


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> BundleSegmenter:
    """The unet3d bundle's inference pipeline with a small network of fixed random weights (the workflow, not
    the model, is under test)."""
    torch.manual_seed(0)
    net = ValidUNet(3, 1, 2, features=SMALL["features"], norm="batch", dropout=0.0, pool_sizes=SMALL["pool_sizes"])
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 0.3]))  # predict some foreground
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    return BundleSegmenter(REPO / "bundles" / "unet3d", path, {**SMALL, "intensity_preset": "mr"})


def test_segment_tcia_study_and_store_seg(
    in_pacs_network: Orthanc, segmenter: BundleSegmenter, shared_data: Path, tmp_path: Path
) -> None:
    series_dir = require(shared_data / "tcia_pgbm001_dicom" / "T1post")
    files = sorted(series_dir.glob("*.dcm"))
    client = PacsClient(in_pacs_network.config)
    client.store(files)
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    summary = segment_study(client, segmenter, study_uid, tmp_path / "work", description="^T1post$", retrieve="move")
    assert summary["stored"]
    assert summary["instances"] == 24
    study = client.find_studies(StudyInstanceUID=study_uid)[0]
    assert "SEG" in list(study.ModalitiesInStudy)
    seg_series = [s for s in client.find_series(study_uid) if s.Modality == "SEG"]
    assert summary["seg_series_uid"] in {str(s.SeriesInstanceUID) for s in seg_series}
    fetched = client.get_series(study_uid, summary["seg_series_uid"], tmp_path / "seg")
    source = load_image(series_dir)
    labels = read_dicom_seg(fetched[0], source.meta["SOPInstanceUIDs"])
    nifti = next(Path(p) for p in summary["outputs"] if p.endswith(".nii.gz"))
    expected = np.asarray(nib.load(nifti).dataobj)
    assert labels.any()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(nib.load(nifti).affine, np.asarray(source.affine), atol=1e-4)
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(fetched[0])], capture_output=True, text=True, check=False)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors


def test_segment_errors(in_pacs_network: Orthanc, segmenter: BundleSegmenter, tmp_path: Path) -> None:
    client = PacsClient(in_pacs_network.config)
    with pytest.raises(PacsError, match=r"study 1\.2\.3\.999 not found"):
        segment_study(client, segmenter, "1.2.3.999", tmp_path)


def _push(folder: Path, port: int, ae_title: str) -> None:
    ae = AE(ae_title=ae_title)
    first = pydicom.dcmread(next(folder.glob("*.dcm")))
    ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDUNET")
    assert assoc.is_established, f"{ae_title} could not associate"
    for ds_path in sorted(folder.glob("*.dcm")):
        assert int(assoc.send_c_store(pydicom.dcmread(ds_path)).Status) == 0
    assoc.release()


def test_listener_segments_a_burst_of_20_series(
    in_pacs_network: Orthanc, segmenter: BundleSegmenter, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    folders = []
    for i in range(20):
        volume = rng.integers(0, 400, size=(20, 18, 6)).astype(np.float32)
        folder = tmp_path / "series" / f"s{i:02d}"
        write_dicom_series(
            volume, folder, spacing=(1.0, 1.0, 3.0), modality="MR", rescale=(1.0, 0.0), series_description=f"burst {i}"
        )
        folders.append(folder)
    listener = PacsListener(
        segmenter,
        PacsClient(in_pacs_network.config),
        "MEDUNET",
        STORAGE_PORT + 1,
        ["PUSHER"],
        tmp_path / "listener",
        idle_seconds=1.0,
        max_queue=4,
    )
    listener.start()
    try:
        with pytest.raises(AssertionError, match="STRANGER could not associate"):
            _push(folders[0], STORAGE_PORT + 1, "STRANGER")
        failures: list[BaseException] = []

        def push(folder: Path) -> None:
            try:
                _push(folder, STORAGE_PORT + 1, "PUSHER")
            except BaseException as err:
                failures.append(err)

        threads = [threading.Thread(target=push, args=(f,)) for f in folders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures, failures
        assert listener.wait_idle(timeout=300)
    finally:
        listener.stop()
    assert len(listener.results) == 20
    assert {r["status"] for r in listener.results.values()} == {"stored"}, listener.results
    assert all(r["instances"] == 6 for r in listener.results.values())
    client = PacsClient(in_pacs_network.config)
    seg_count = 0
    for folder in folders:
        study_uid = str(pydicom.dcmread(next(folder.glob("*.dcm"))).StudyInstanceUID)
        seg_count += sum(1 for s in client.find_series(study_uid) if s.Modality == "SEG")
    assert seg_count == 20


def test_pacs_config_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDUNET_PACS_HOST", "10.0.0.5")
    monkeypatch.setenv("MEDUNET_PACS_PORT", "104")
    monkeypatch.setenv("MEDUNET_PACS_PASSWORD", "hunter2")
    config = PacsConfig.from_env()
    assert (config.host, config.port, config.password) == ("10.0.0.5", 104, "hunter2")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.describe()
    bad = tmp_path / "pacs.json"
    bad.write_text('{"hots": "x"}')
    with pytest.raises(ValueError, match="unknown PACS settings \\['hots'\\]"):
        PacsConfig.from_file(bad)


def test_stow_and_a_series_with_a_missing_slice(
    in_pacs_network: Orthanc, segmenter: BundleSegmenter, tmp_path: Path
) -> None:
    """STOW-RS upload; a series with a gap is refused with a clear error and nothing is written or stored."""
    from medunet.io import DicomSeriesError

    volume = np.random.default_rng(1).integers(0, 300, size=(20, 18, 7)).astype(np.float32)
    paths = write_dicom_series(volume, tmp_path / "gap", spacing=(1.0, 1.0, 2.5), modality="MR", rescale=(1.0, 0.0))
    paths[3].unlink()  # the middle of the series is missing
    client = PacsClient(in_pacs_network.config)
    client.stow([p for p in paths if p.exists()])
    study_uid = str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    series = client.qido_series(study_uid)
    assert len(series) == 1
    with pytest.raises(DicomSeriesError, match="not evenly spaced"):
        segment_study(client, segmenter, study_uid, tmp_path / "work", retrieve="wado")
    assert not (tmp_path / "work" / "output").exists() or not list((tmp_path / "work" / "output").iterdir())
    assert all(s.Modality != "SEG" for s in client.find_series(study_uid))
