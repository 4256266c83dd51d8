"""The DICOM listener against a real Orthanc and DCMTK's clients: a burst of 20 series pushed at once, C-ECHO,
compressed pushes of a TCIA series, a series sent again."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE

from medunet.apps.pacs_listener import DEFAULT_IDLE_SECONDS, PacsListener
from medunet.apps.segmenter import BundleSegmenter
from medunet.data.dicom import write_dicom_series
from medunet.io import load_image
from medunet.io.codecs import codec_hint
from medunet.io.dicom_seg import read_dicom_seg
from medunet.io.pacs import PacsClient, PacsConfig
from tests.conftest import dcmtk, free_port, require
from tests.orthanc import STORAGE_PORT, Orthanc


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
    assert all(r["instances"] == 6 for r in listener.results.values())  # the last run of each had the whole series
    client = PacsClient(in_pacs_network.config)
    seg_count = 0
    for folder in folders:
        study_uid = str(pydicom.dcmread(next(folder.glob("*.dcm"))).StudyInstanceUID)
        seg_count += sum(1 for s in client.find_series(study_uid) if s.Modality == "SEG")
    # One SEG per run. On a loaded machine a sender may pause longer than the quiet time within a series: the
    # listener then segments the part it has and, as documented, the whole series again when the rest arrives.
    assert seg_count == sum(r["runs"] for r in listener.results.values())


def test_listener_needs_allowed_senders_and_defaults_to_the_library_quiet_time(segmenter: BundleSegmenter) -> None:
    with pytest.raises(ValueError, match="allowed_aets must name the AE titles"):
        PacsListener(segmenter, PacsClient(PacsConfig()), allowed_aets=[])
    listener = PacsListener(segmenter, PacsClient(PacsConfig()), allowed_aets=["SCANNER"])
    assert listener.idle_seconds == DEFAULT_IDLE_SECONDS


class _Idle:
    """Segmenter and destination of a listener that only answers C-ECHO here."""

    def segment(self, *_: object) -> list[Path]:
        raise AssertionError("nothing was sent to segment")


@pytest.mark.skipif(dcmtk("echoscu") is None, reason="DCMTK's echoscu is not installed (apt-get install dcmtk)")
def test_dcmtk_echoscu_reaches_the_listener_and_a_stranger_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    listener = PacsListener(_Idle(), _Idle(), "MEDUNET", port, ["SCANNER"], tmp_path / "work")  # type: ignore[arg-type]
    listener.start()
    try:
        with caplog.at_level("DEBUG"):
            ok = subprocess.run([str(dcmtk("echoscu")), "-aet", "SCANNER", "-aec", "MEDUNET", "127.0.0.1", str(port)],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
            stranger = subprocess.run([str(dcmtk("echoscu")), "-aet", "STRANGER", "-aec", "MEDUNET", "127.0.0.1", str(port)],
                                      capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        listener.stop()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert stranger.returncode != 0
    assert "Association Rejected" in stranger.stdout + stranger.stderr
    assert "Bad file descriptor" not in caplog.text


class _Recording:
    """Segmenter and destination that record the series they get."""

    def __init__(self) -> None:
        self.segmented: list[str] = []

    def segment(self, case: Path, output_dir: Path) -> list[Path]:
        self.segmented.append(Path(case).name)
        seg = Path(output_dir) / "case_seg.dcm"
        seg.parent.mkdir(parents=True, exist_ok=True)
        seg.write_bytes(b"SEG")
        return [seg]

    def store(self, files: list[Path]) -> None:
        pass


def test_a_series_sent_again_is_segmented_again_with_every_instance(tmp_path: Path) -> None:
    port, recorder = free_port(), _Recording()
    folder = tmp_path / "series"
    write_dicom_series(np.zeros((12, 10, 6), np.float32), folder, modality="MR", rescale=(1.0, 0.0))
    first = tmp_path / "first"
    first.mkdir()
    for path in sorted(folder.glob("*.dcm"))[:4]:  # the scanner sends 4 slices, then all 6 again
        (first / path.name).write_bytes(path.read_bytes())
    listener = PacsListener(recorder, recorder, "MEDUNET", port, ["PUSHER"], tmp_path / "work", idle_seconds=0.3)  # type: ignore[arg-type]
    listener.start()
    try:
        _push(first, port, "PUSHER")
        assert listener.wait_idle(timeout=60)
        _push(folder, port, "PUSHER")
        assert listener.wait_idle(timeout=60)
    finally:
        listener.stop()
    [result] = listener.results.values()
    assert len(recorder.segmented) == 2
    assert result["status"] == "stored"
    assert result["runs"] == 2
    assert result["instances"] == 6


def _compressed_copy(source: Path, dest: Path, syntax: str) -> Path:
    """A copy of a series in ``syntax`` (JPEG Lossless by DCMTK's dcmcjpeg, JPEG 2000 by pydicom with
    pylibjpeg-openjpeg) under new series and instance UIDs of the same study."""
    dest.mkdir(parents=True)
    series_uid = pydicom.uid.generate_uid()
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesDescription = series_uid, f"{ds.SeriesDescription} {syntax}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        if syntax == "jpeg2000":
            ds.compress(pydicom.uid.JPEG2000Lossless)
            ds.save_as(dest / path.name)
        else:
            ds.save_as(dest / f"plain-{path.name}")
            subprocess.run(
                [str(dcmtk("dcmcjpeg")), str(dest / f"plain-{path.name}"), str(dest / path.name)], check=True
            )
            (dest / f"plain-{path.name}").unlink()
    return dest


@pytest.mark.skipif(
    dcmtk("storescu") is None or dcmtk("dcmcjpeg") is None,
    reason="DCMTK's storescu / dcmcjpeg are not installed (apt-get install dcmtk)",
)
def test_dcmtk_storescu_pushes_of_jpeg_lossless_and_jpeg2000_are_segmented_and_the_seg_stored(
    in_pacs_network: Orthanc, segmenter: BundleSegmenter, shared_data: Path, tmp_path: Path
) -> None:
    source = require(shared_data / "tcia_pgbm001_dicom" / "T1post")
    copies = {syntax: _compressed_copy(source, tmp_path / syntax, syntax) for syntax in ("jpeg-lossless", "jpeg2000")}
    expected = {"jpeg-lossless": pydicom.uid.JPEGLosslessSV1, "jpeg2000": pydicom.uid.JPEG2000Lossless}
    propose = {"jpeg-lossless": "--propose-lossless", "jpeg2000": "--propose-j2k-lossless"}  # as a scanner set to it
    for syntax, folder in copies.items():
        assert pydicom.dcmread(next(folder.glob("*.dcm"))).file_meta.TransferSyntaxUID == expected[syntax]
    port = STORAGE_PORT + 2
    listener = PacsListener(
        segmenter, PacsClient(in_pacs_network.config), "MEDUNET", port, ["SCANNER"], tmp_path / "work", idle_seconds=1.0
    )
    listener.start()
    try:
        for syntax, folder in copies.items():
            push = subprocess.run([str(dcmtk("storescu")), propose[syntax], "-aet", "SCANNER", "-aec", "MEDUNET", "127.0.0.1", str(port),
                                   *map(str, sorted(folder.glob("*.dcm")))],
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert push.returncode == 0, push.stdout + push.stderr
        stranger = subprocess.run([str(dcmtk("storescu")), "-aet", "STRANGER", "-aec", "MEDUNET", "127.0.0.1", str(port),
                                   str(next(copies["jpeg2000"].glob("*.dcm")))],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
        assert listener.wait_idle(timeout=300)
    finally:
        listener.stop()
    assert stranger.returncode != 0
    assert "Association Rejected" in stranger.stdout + stranger.stderr
    assert len(listener.results) == 2, listener.results
    assert {r["status"] for r in listener.results.values()} == {"stored"}, listener.results
    received = sorted((tmp_path / "work" / "incoming").glob("series-*/*.dcm"))
    assert {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in received} == set(expected.values())
    # lossless: the decoded volumes equal the uncompressed source, so both SEGs hold the same labels
    original = np.asarray(load_image(source))
    client = PacsClient(in_pacs_network.config)
    study_uid = str(pydicom.dcmread(next(source.glob("*.dcm"))).StudyInstanceUID)
    in_pacs = {str(s.SeriesInstanceUID) for s in client.find_series(study_uid) if s.Modality == "SEG"}
    labels = []
    for folder in copies.values():
        volume = load_image(folder)
        np.testing.assert_array_equal(np.asarray(volume), original)
        result = listener.results[volume.meta["SeriesInstanceUID"]]
        [seg_file] = result["seg"]
        seg_uid = str(pydicom.dcmread(seg_file).SeriesInstanceUID)
        assert seg_uid in in_pacs  # found by C-FIND in the source's study
        # the measurement report (SR) and the contours (RTSTRUCT) went back with the SEG
        stored = {str(s.SeriesInstanceUID): str(s.Modality) for s in client.find_series(study_uid)}
        assert sorted(stored[str(pydicom.dcmread(p).SeriesInstanceUID)] for p in result["reports"]) == [
            "RTSTRUCT",
            "SR",
        ]
        [fetched] = client.get_series(study_uid, seg_uid, tmp_path / "fetched" / seg_uid)
        labels.append(read_dicom_seg(fetched, volume.meta["SOPInstanceUIDs"]))
    assert labels[0].any()
    np.testing.assert_array_equal(labels[0], labels[1])


def test_a_missing_codec_is_named_with_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import medunet.io.codecs as codecs

    class _Missing:
        is_available = False

    monkeypatch.setattr(codecs, "get_decoder", lambda syntax: _Missing())
    hint = codec_hint(pydicom.uid.JPEG2000Lossless)
    assert "JPEG 2000" in hint
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in hint
    assert codec_hint(pydicom.uid.ExplicitVRLittleEndian) == ""
    assert pydicom.uid.JPEG2000Lossless not in codecs.decodable_transfer_syntaxes()


def test_a_two_series_model_segments_each_study_once_it_is_complete(
    two_series_segmenter: BundleSegmenter, tmp_path: Path
) -> None:
    """A multi-series model (T1post + FLAIR) takes studies: the series of a study pushed one after another become
    one case; a study without a FLAIR series fails with its series listed."""
    port, destination = free_port(), _Recording()
    rng = np.random.default_rng(0)
    uids = {}
    for study, names in (("1.2.826.0.1.3680043.10.71", ("T1post", "FLAIRreg", "ADC")),
                         ("1.2.826.0.1.3680043.10.72", ("T1post", "ADC"))):  # fmt: skip
        for name in names:
            files = write_dicom_series(rng.uniform(0, 400, (24, 20, 6)).astype(np.float32), tmp_path / study / name,
                                       modality="MR", rescale=(1.0, 0.0), series_description=name, study_uid=study,
                                       frame_of_reference_uid=f"{study}.9")  # fmt: skip
            uids[study, name] = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    listener = PacsListener(two_series_segmenter, destination, "MEDUNET", port, ["PUSHER"], tmp_path / "work",  # type: ignore[arg-type]
                            idle_seconds=0.5)  # fmt: skip
    listener.start()
    try:
        for folder in sorted(tmp_path.glob("1.2.*/*")):
            _push(folder, port, "PUSHER")
        assert listener.wait_idle(timeout=120)
    finally:
        listener.stop()
    complete, partial = listener.results["1.2.826.0.1.3680043.10.71"], listener.results["1.2.826.0.1.3680043.10.72"]
    assert complete["status"] == "stored", complete
    assert complete["instances"] == 18
    seg = pydicom.dcmread(complete["seg"][0], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["1.2.826.0.1.3680043.10.71", "T1post"]
    assert partial["status"] == "failed"
    assert "(?i)flair" in partial["error"]
    assert "description='ADC'" in partial["error"]
    assert sorted(p.name for p in (tmp_path / "work" / "results").iterdir()) == [
        "study-1-2-826-0-1-3680043-10-71.json", "study-1-2-826-0-1-3680043-10-72.json"]  # fmt: skip
