"""Data lists of the bundles: the training list (default data or a decathlon JSON) and inference folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medunet.data.datasets import make_default_dataset
from medunet.data.dicom import write_dicom_series
from medunet.engines import inference_datalist, resolve_datalist, study_datalist


def test_resolve_datalist_default_and_errors(tmp_path: Path) -> None:
    datalist = resolve_datalist("", tmp_path / "out", 2, {"n_training": 2, "n_validation": 1, "shape": [32, 32]})
    assert len(datalist["training"]) == 2
    assert Path(datalist["training"][0]["image"]).is_absolute()
    listing = make_default_dataset(tmp_path / "mine", n_training=1, n_validation=0, shape=(32, 32))
    again = resolve_datalist(listing.parent, tmp_path / "out2")
    assert again["validation"] == again["training"]  # no validation list: validate on the training cases
    with pytest.raises(FileNotFoundError, match=r"no dataset\.json there"):
        resolve_datalist(tmp_path / "nothing", tmp_path / "out3")


def test_inference_datalist(tmp_path: Path) -> None:
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [Path(c["image"]).name for c in inference_datalist(tmp_path)] == ["a.nii.gz", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no NIfTI"):
        inference_datalist(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inference_datalist(tmp_path / "missing")


def test_inference_datalist_finds_dicom_series_folders(tmp_path: Path) -> None:
    volume = np.zeros((8, 8, 3), dtype=np.float32)
    write_dicom_series(volume, tmp_path / "cases" / "series_a")
    (tmp_path / "cases" / "c.nii.gz").write_bytes(b"")
    cases = inference_datalist(tmp_path / "cases")
    assert [Path(c["image"]).name for c in cases] == ["c.nii.gz", "series_a"]
    # a folder holding DICOM files directly is itself the one case
    assert inference_datalist(tmp_path / "cases" / "series_a") == [{"image": str(tmp_path / "cases" / "series_a")}]


def _study_folder(root: Path) -> Path:
    """Two visits (studies) of one patient: each a T1, a FLAIR and a CT series folder."""
    volume = np.zeros((8, 8, 3), dtype=np.float32)
    for visit in ("1", "2"):
        study = f"1.2.826.0.1.3680043.10.511.9.{visit}"
        for name, modality in (("T1", "MR"), ("FLAIR", "MR"), ("CT", "CT")):
            write_dicom_series(volume, root / f"v{visit}_{name}", modality=modality, series_description=f"ax {name}",
                               rescale=(1.0, 0.0), study_uid=study)  # fmt: skip
    return root


def test_series_selection_from_the_command_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _study_folder(tmp_path / "export")
    with caplog.at_level("WARNING"):
        assert len(inference_datalist(root)) == 6
    assert "holds 6 DICOM series of 2 studies (patients or visits); every one is segmented" in caplog.text
    assert "--series_description REGEX, --modality MR|CT|..., or --series_uid UID" in caplog.text
    names = [Path(c["image"]).name for c in inference_datalist(root, series_description="^ax flair$")]
    assert names == ["v1_FLAIR", "v2_FLAIR"]
    assert [Path(c["image"]).name for c in inference_datalist(root, modality="ct")] == ["v1_CT", "v2_CT"]
    uid = str(pydicom.dcmread(next((root / "v2_T1").glob("*.dcm"))).SeriesInstanceUID)
    assert [Path(c["image"]).name for c in inference_datalist(root, series_uid=uid)] == ["v2_T1"]
    with pytest.raises(ValueError, match=r"no DICOM series in input_dir=.* matches \{'modality': 'PT'\}; series found"):
        inference_datalist(root, modality="PT")
    with pytest.raises(ValueError, match=r"--series_description '\(' is not a valid regular expression"):
        inference_datalist(root, series_description="(")


def test_a_shared_data_set_by_name(shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDUNET_DATA_DIR", str(shared_data))
    try:
        datalist = resolve_datalist("isbi2012_em", tmp_path)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert (len(datalist["training"]), len(datalist["validation"]), datalist["source"]) == (20, 5, "isbi2012_em")


def test_study_folders_become_cases_when_channels_are_given(tmp_path: Path) -> None:
    """Studies at any depth, told apart by StudyInstanceUID: those with a series for each pattern are cases (their
    folder as image and label), the others are left out; none matching lists every study's reason."""
    from medunet.io import DicomSeriesError

    volume = np.ones((8, 8, 3))
    for patient, study_uid, series in [
        ("P1/visit1", "1.2.1", ["T1post", "FLAIRreg", "MaskTumor"]),
        ("P1/visit2", "1.2.2", ["T1post", "FLAIRreg", "MaskTumor"]),
        ("P2/visit1", "1.2.3", ["T1post", "ADC"]),  # no FLAIR: left out
    ]:
        for description in series:
            write_dicom_series(volume, tmp_path / patient / description, modality="MR", rescale=(1.0, 0.0),
                               series_description=description, study_uid=study_uid,
                               frame_of_reference_uid=f"{study_uid}.9")  # fmt: skip
    cases = inference_datalist(tmp_path, channels=["(?i)t1post", "(?i)flair"])
    assert cases == [{"image": str(tmp_path / "P1" / "visit1")}, {"image": str(tmp_path / "P1" / "visit2")}]
    labelled = study_datalist(tmp_path, ["(?i)t1post", "(?i)flair"], label="(?i)mask")
    assert [c["label"] for c in labelled] == [c["image"] for c in cases]
    with pytest.raises(DicomSeriesError, match=r"no study in .* has a series for each of \['\(\?i\)perf'\]") as err:
        study_datalist(tmp_path, ["(?i)perf"])
    assert "ADC" in str(err.value)  # each study's series listed


def test_tumour_folds_are_patient_wise_and_need_the_channels(shared_data: Path) -> None:
    from tests.conftest import require

    require(shared_data / "tcia_pgbm_tumor")
    validated = []
    for fold in range(3):
        datalist = resolve_datalist(f"tcia_pgbm_tumor_fold{fold}", "unused", 3, channel_series=["t1", "flair"])
        training = {case["patient"] for case in datalist["training"]}
        validation = {case["patient"] for case in datalist["validation"]}
        assert len(validation) == 1
        assert not training & validation, "a patient never trains and validates"
        validated += [case["study"] for case in datalist["validation"]]
    assert len(validated) == len(set(validated)) == 5, "the folds validate each study once"
    with pytest.raises(ValueError, match=r"tcia_pgbm_tumor_fold0: its cases are DICOM studies read as 2 channels"):
        resolve_datalist("tcia_pgbm_tumor_fold0", "unused", 3)
