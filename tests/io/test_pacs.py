"""PACS client against a real Orthanc: echo, find, retrieve (C-MOVE, C-GET, WADO-RS), store, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medunet.io.pacs import PacsClient, PacsConfig, PacsError, series_folder_name, series_uid_of_folder
from tests.conftest import require
from tests.orthanc import Orthanc


def pixels_by_uid(paths: list[Path]) -> dict[str, np.ndarray]:
    return {str(ds.SOPInstanceUID): ds.pixel_array for ds in (pydicom.dcmread(p) for p in paths)}


@pytest.fixture
def t1post(shared_data: Path) -> list[Path]:
    return sorted(require(shared_data / "tcia_pgbm001_dicom" / "T1post").glob("*.dcm"))


def test_echo_find_and_retrieve_pixel_identical(in_pacs_network: Orthanc, t1post: list[Path], tmp_path: Path) -> None:
    client = PacsClient(in_pacs_network.config)
    assert client.echo()
    assert client.store(t1post) == 24
    study_uid = str(pydicom.dcmread(t1post[0]).StudyInstanceUID)
    series_uid = str(pydicom.dcmread(t1post[0]).SeriesInstanceUID)
    studies = client.find_studies(StudyInstanceUID=study_uid)
    assert [str(s.StudyInstanceUID) for s in studies] == [study_uid]
    series = client.find_series(study_uid)
    assert series_uid in {str(s.SeriesInstanceUID) for s in series}
    original = pixels_by_uid(t1post)
    for name, retrieve in (("move", client.move_series), ("get", client.get_series), ("wado", client.wado_series)):
        got = pixels_by_uid(retrieve(study_uid, series_uid, tmp_path / name))
        assert got.keys() == original.keys(), name
        assert all(np.array_equal(got[k], original[k]) for k in original), name
    assert {s["0020000E"]["Value"][0] for s in client.qido_series(study_uid)} >= {series_uid}


def test_errors_are_clear_and_leave_nothing(in_pacs_network: Orthanc, tmp_path: Path) -> None:
    config = in_pacs_network.config
    unknown_ae = PacsClient(PacsConfig(**{**config.__dict__, "calling_aet": "STRANGER"}))
    with pytest.raises(PacsError, match="does it know the AE title 'STRANGER'"):
        unknown_ae.echo()
    down = PacsClient(PacsConfig(**{**config.__dict__, "port": 1, "timeout": 3}))
    with pytest.raises(PacsError, match=r"ORTHANC@127\.0\.0\.1:1"):
        down.echo()
    client = PacsClient(config)
    with pytest.raises(PacsError, match="not found"):
        client.get_series("1.2.3.4.5", "1.2.3.4.5.6", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()  # nothing half-written
    wrong_password = PacsClient(PacsConfig(**{**config.__dict__, "password": "wrong"}))
    with pytest.raises(Exception, match="401"):
        wrong_password.qido_series("1.2.3")
    assert "s3cret" not in repr(config)


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


def test_malformed_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDUNET_PACS_PORT", "eleven")
    with pytest.raises(ValueError, match=r"MEDUNET_PACS_PORT='eleven' is not a valid int; set it to a whole number"):
        PacsConfig.from_env()
    monkeypatch.setenv("MEDUNET_PACS_PORT", "104")
    monkeypatch.setenv("MEDUNET_PACS_TCP_NODELAY", "off")
    monkeypatch.setenv("MEDUNET_PACS_TIMEOUT", "2.5")
    config = PacsConfig.from_env()
    assert (config.port, config.tcp_nodelay, config.timeout) == (104, False, 2.5)


def test_settings_file_errors_name_file_and_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"PACS settings file .*missing\.json does not exist"):
        PacsConfig.from_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"port": 4242,')
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        PacsConfig.from_file(broken)
    typed = tmp_path / "typed.json"
    typed.write_text('{"port": "4242", "password": 7}')
    with pytest.raises(ValueError, match=r"typed\.json: setting 'port' = '4242' must be a whole number"):
        PacsConfig.from_file(typed)
    typed.write_text('{"password": 7}')
    with pytest.raises(ValueError, match=r"setting 'password' = \(hidden\)"):
        PacsConfig.from_file(typed)


def test_unknown_retrieve_method_lists_the_valid_ones(tmp_path: Path) -> None:
    client = PacsClient(PacsConfig(port=1, timeout=0.5))
    with pytest.raises(ValueError, match="retrieve='ftp' is not supported; valid options are 'move', 'get', 'wado'"):
        client.retrieve_series("1.2", "1.2.3", tmp_path, "ftp")
    with pytest.raises(ValueError, match="level='IMAGE' is not supported; valid options are 'STUDY', 'SERIES'"):
        client.find("IMAGE")


def test_series_folder_names_have_no_dots() -> None:
    assert series_folder_name("1.2.840.10008") == "series-1-2-840-10008"
    assert series_uid_of_folder("series-1-2-840-10008") == "1.2.840.10008"
    assert series_uid_of_folder("series-a-b") is None
    assert series_uid_of_folder("other") is None


def test_labelmap_seg_stored_found_and_read_back(
    in_pacs_network: Orthanc, shared_data: Path, t1post: list[Path], tmp_path: Path
) -> None:
    """A label-map SEG of the TCIA tumour mask: Orthanc stores it (C-STORE), C-FIND finds its series, and the copy
    retrieved over DICOMweb reads back into the label image that was written."""
    from medunet.io import load_image
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.io.dicom_seg import read_dicom_seg, write_dicom_seg

    root = require(shared_data / "tcia_pgbm001_dicom")
    labels = (np.asarray(load_image(root / "MaskTumor")[0]) > 0).astype(np.uint8)
    seg_path = write_dicom_seg(
        labels, root / "T1post", tmp_path / "seg.dcm", [SegmentSpec(1, "tumour")], seg_type="labelmap"
    )
    seg = pydicom.dcmread(seg_path)
    assert seg.SegmentationType == "LABELMAP"
    client = PacsClient(in_pacs_network.config)
    client.store(t1post)
    assert client.store([seg_path]) == 1
    found = client.find_series(str(seg.StudyInstanceUID))
    assert {str(s.SeriesInstanceUID): str(s.Modality) for s in found}[str(seg.SeriesInstanceUID)] == "SEG"
    back = client.wado_series(str(seg.StudyInstanceUID), str(seg.SeriesInstanceUID), tmp_path / "back")
    assert len(back) == 1
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in t1post]
    order = load_image(root / "T1post").meta["SOPInstanceUIDs"]
    assert set(order) == set(uids)
    np.testing.assert_array_equal(read_dicom_seg(back[0], order), labels)


def test_a_pacs_that_refuses_label_map_segs_is_named_with_the_fix(tmp_path: Path) -> None:
    """A storage SCP that takes only the SOP classes it knows (as Orthanc does by default): the error names the
    class and says what to do, instead of a bare aborted association."""
    from pynetdicom import AE, StoragePresentationContexts

    from medunet.data.dicom import write_dicom_series
    from medunet.io import read_dicom_series, scan_dicom_folder
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.io.dicom_seg import build_dicom_seg
    from medunet.io.pacs import LABELMAP_SEG_STORAGE
    from tests.conftest import free_port

    write_dicom_series(np.zeros((8, 6, 3), np.float32), tmp_path / "s")
    labels = np.zeros((8, 6, 3), np.uint8)
    labels[2:4, 2:4, 1] = 1
    seg = build_dicom_seg(
        labels,
        read_dicom_series(scan_dicom_folder(tmp_path / "s")[0]).headers,
        [SegmentSpec(1, "x")],
        seg_type="labelmap",
    )
    seg.save_as(tmp_path / "seg.dcm")
    scp = AE(ae_title="OLDPACS")
    scp.supported_contexts = [cx for cx in StoragePresentationContexts if cx.abstract_syntax != LABELMAP_SEG_STORAGE]
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    try:
        client = PacsClient(PacsConfig(port=port, called_aet="OLDPACS", timeout=5.0))
        with pytest.raises(
            PacsError,
            match=r"accepts none of the requested SOP classes: 1\.2\.840\.10008\.5\.1\.4\.1\.1\.66\.7\. A label-map SEG needs .*UnknownSopClassAccepted.*--seg-type binary",
        ):
            client.store([tmp_path / "seg.dcm"])
    finally:
        server.shutdown()
