"""The PACS study workflow against a real Orthanc: segment a study, store the SEG back, and the errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medunet.apps.pacs_study import choose_channel_series, choose_series, segment_study
from medunet.apps.segmenter import BundleSegmenter
from medunet.data.dicom import write_dicom_series
from medunet.io import DicomSeriesError, load_image
from medunet.io.dicom_seg import read_dicom_seg
from medunet.io.pacs import PacsClient, PacsConfig, PacsError
from tests.conftest import require, sr_numeric_items
from tests.orthanc import Orthanc


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
    nifti = next(Path(p) for p in summary["outputs"] if p.endswith("_seg.nii.gz"))
    expected = np.asarray(nib.load(nifti).dataobj)
    assert labels.any()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(nib.load(nifti).affine, np.asarray(source.affine), atol=1e-4)
    # the measurement report (TID 1500 SR) went to the same study, and its volumes are the NIfTI's voxel counts
    reports = {name.rsplit("_", 1)[1]: uid for name, uid in summary["report_series_uids"].items()}
    found = {str(s.SeriesInstanceUID): str(s.Modality) for s in client.find_series(study_uid)}
    assert (found[reports["sr.dcm"]], found[reports["rtstruct.dcm"]]) == ("SR", "RTSTRUCT")
    [sr_file] = client.get_series(study_uid, reports["sr.dcm"], tmp_path / "sr")
    [rt_file] = client.get_series(study_uid, reports["rtstruct.dcm"], tmp_path / "rt")
    sr = pydicom.dcmread(sr_file)
    voxel_ml = abs(np.linalg.det(nib.load(nifti).affine[:3, :3])) / 1000.0
    volumes = sr_numeric_items(sr, "118565006")  # SCT Volume
    counts = {value: int((expected == value).sum()) for value in np.unique(expected) if value}
    assert volumes == pytest.approx([counts[v] * voxel_ml for v in sorted(counts)], rel=1e-6)
    assert sr_numeric_items(sr, "VOXELCOUNT") == [counts[v] for v in sorted(counts)]
    measurements = json.loads(next(Path(p) for p in summary["outputs"] if p.endswith("_measurements.json")).read_text())
    assert [s["voxel_count"] for s in measurements["segments"]] == [counts[v] for v in sorted(counts)]
    if shutil.which("dciodvfy"):
        for path in (fetched[0], sr_file, rt_file):
            report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
            errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
            assert not errors, (path, errors)


def test_a_two_series_model_retrieves_its_series_and_references_the_first(
    in_pacs_network: Orthanc, two_series_segmenter: BundleSegmenter, shared_data: Path, tmp_path: Path
) -> None:
    """A study of T1post, FLAIRreg and MaskTumor series on the PACS: the model's channel_series choose T1post and
    FLAIR (no option), both are retrieved into one study folder, and the SEG stored back references T1post."""
    study_dir = require(shared_data / "tcia_pgbm_tumor") / "PGBM-001" / "1991-11-19"
    client = PacsClient(in_pacs_network.config)
    client.store(sorted(study_dir.glob("*/*.dcm")))
    t1 = pydicom.dcmread(next((study_dir / "T1post").glob("*.dcm")), stop_before_pixels=True)
    study_uid = str(t1.StudyInstanceUID)
    summary = segment_study(client, two_series_segmenter, study_uid, tmp_path / "work", retrieve="get")
    assert summary["series_uid"] == str(t1.SeriesInstanceUID)
    assert summary["instances"] == len(list((study_dir / "T1post").glob("*.dcm"))) + len(
        list((study_dir / "FLAIRreg").glob("*.dcm"))
    )
    seg = pydicom.dcmread(next(p for p in summary["outputs"] if p.endswith("_seg.dcm")), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == str(t1.SeriesInstanceUID)
    assert summary["stored"]
    assert summary["seg_series_uid"] in {str(s.SeriesInstanceUID) for s in client.find_series(study_uid)}


def test_choose_channel_series_lists_the_study_when_a_pattern_fails() -> None:
    series = [_series("1", "MR", "T1post"), _series("2", "MR", "FLAIRreg"), _series("3", "SEG", "FLAIR mask")]
    assert [s.SeriesInstanceUID for s in choose_channel_series(series, ["(?i)t1post", "(?i)flair"])] == ["1", "2"]
    with pytest.raises(PacsError, match=r"(?s)'\(\?i\)adc'.*T1post.*FLAIRreg"):
        choose_channel_series(series, ["(?i)t1post", "(?i)adc"])


def test_segment_errors(in_pacs_network: Orthanc, segmenter: BundleSegmenter, tmp_path: Path) -> None:
    client = PacsClient(in_pacs_network.config)
    with pytest.raises(PacsError, match=r"study 1\.2\.3\.999 not found"):
        segment_study(client, segmenter, "1.2.3.999", tmp_path)


def test_stow_and_a_series_with_a_missing_slice(
    in_pacs_network: Orthanc, segmenter: BundleSegmenter, tmp_path: Path
) -> None:
    """STOW-RS upload; a series with a gap is refused with a clear error and nothing is written or stored."""
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


def _series(uid: str, modality: str, description: str) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesDescription = uid, modality, description
    return ds


def test_choose_series_skips_non_images_and_lists_candidates() -> None:
    series = [_series("1", "MR", "T1post"), _series("2", "MR", "FLAIR"), _series("3", "SEG", "T1post mask")]
    assert choose_series(series, description="^T1").SeriesInstanceUID == "1"
    assert choose_series(series, series_uid="2").SeriesInstanceUID == "2"
    with pytest.raises(PacsError, match=r"2 series match; choose one with --series-uid.*\n  - 1 MR 'T1post'"):
        choose_series(series, modality="mr")


def test_unknown_retrieve_method_fails_before_contacting_the_pacs(segmenter: BundleSegmenter, tmp_path: Path) -> None:
    client = PacsClient(PacsConfig(port=1, timeout=0.5))  # nothing listens there: a contact would raise PacsError
    with pytest.raises(ValueError, match="retrieve='ftp' is not supported; valid options are 'move', 'get', 'wado'"):
        segment_study(client, segmenter, "1.2.3", tmp_path, retrieve="ftp")
