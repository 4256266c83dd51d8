"""Awkward DICOM series: files without the Part-10 preamble are read (not silently dropped), a non-finite slice
position is a clear error naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from medunet.data.dicom import write_dicom_series
from medunet.io import load_image
from medunet.io.dicom_series import DicomSeriesError, scan_dicom_folder


def _series(folder: Path) -> list[Path]:
    volume = np.random.default_rng(0).integers(0, 400, size=(12, 10, 5)).astype(np.float32)
    write_dicom_series(volume, folder, spacing=(1.0, 1.0, 3.0), modality="MR", rescale=(1.0, 0.0))
    return sorted(folder.glob("*.dcm"))


def _strip_part10(path: Path, implicit: bool) -> None:
    """Rewrites ``path`` as a raw dataset: no 128-byte preamble, no DICM, no file meta."""
    ds = pydicom.dcmread(path)
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    path.write_bytes(fp.getvalue())


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit VR", "implicit VR"])
def test_files_without_the_part10_preamble_are_part_of_the_series(tmp_path: Path, implicit: bool) -> None:
    files = _series(tmp_path / "part10")
    shutil.copytree(tmp_path / "part10", tmp_path / "raw")
    for path in sorted((tmp_path / "raw").glob("*.dcm"))[1:4]:
        _strip_part10(path, implicit)
    (tmp_path / "raw" / "notes.txt").write_text("not DICOM\n")
    (tmp_path / "raw" / "odd.bin").write_bytes(b"\x08\x00 looks like a tag but is not DICOM")
    [info] = scan_dicom_folder(tmp_path / "raw")
    assert len(info.files) == len(files)
    expected, raw = load_image(tmp_path / "part10"), load_image(tmp_path / "raw")
    assert raw.shape == expected.shape
    np.testing.assert_array_equal(raw.numpy(), expected.numpy())
    np.testing.assert_allclose(raw.affine.numpy(), expected.affine.numpy())


def _cut_points(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    return {
        "in the file meta": 150,  # past the DICM preamble, inside group 0002: no data element survives
        "before Rows": data.index(b"\x28\x00\x10\x00"),  # (0028,0010) Rows, explicit VR little endian
        "in the pixel data": len(data) - 20,
    }


@pytest.mark.parametrize("where", ["in the file meta", "before Rows", "in the pixel data"])
def test_a_truncated_slice_is_named_not_reported_as_a_gap(tmp_path: Path, where: str) -> None:
    files = _series(tmp_path / "s")
    cut = _cut_points(files[2])[where]
    files[2].write_bytes(files[2].read_bytes()[:cut])
    with pytest.raises(DicomSeriesError, match=rf"{files[2].name}: .*(truncated|less than expected)") as caught:
        load_image(tmp_path / "s")
    assert "not evenly spaced" not in str(caught.value)


def test_a_nan_slice_position_names_the_file(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    ds = pydicom.dcmread(files[2])
    ds.ImagePositionPatient = ["0", "0", "nan"]
    ds.save_as(files[2])
    with pytest.raises(
        DicomSeriesError, match=rf"{files[2].name}: ImagePositionPatient \[0\.0, 0\.0, nan\] is not finite"
    ):
        load_image(tmp_path / "s")


def _non_image(like: Path, path: Path, modality: str, sop_class: str) -> Path:
    """A DICOM object without pixels (an RTSTRUCT, an SR) exported with the image series' UIDs."""
    image = pydicom.dcmread(like)
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.SOPClassUID = sop_class, sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, image.SeriesInstanceUID, image.StudyInstanceUID
    ds.PatientID, ds.StructureSetLabel = image.PatientID, "contours"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_an_rtstruct_sharing_the_series_uid_is_not_read_as_a_slice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _series(tmp_path / "s")
    expected = load_image(tmp_path / "s")
    _non_image(files[0], tmp_path / "s" / "rtstruct.dcm", "RTSTRUCT", pydicom.uid.RTStructureSetStorage)
    _non_image(files[0], tmp_path / "s" / "sr.dcm", "SR", pydicom.uid.ComprehensiveSRStorage)
    with caplog.at_level("INFO", logger="medunet.io.dicom_series"):
        [info] = scan_dicom_folder(tmp_path / "s")
        volume = load_image(tmp_path / "s")
    assert len(info.files) == len(files)
    np.testing.assert_array_equal(volume.numpy(), expected.numpy())
    assert "ignored DICOM objects that are not source images (1 RTSTRUCT, 1 SR)" in caplog.text


def test_a_folder_of_contours_only_is_a_clear_error(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    (tmp_path / "rt").mkdir()
    _non_image(files[0], tmp_path / "rt" / "rtstruct.dcm", "RTSTRUCT", pydicom.uid.RTStructureSetStorage)
    with pytest.raises(DicomSeriesError, match=r"no DICOM images in .*rt: its DICOM objects are not images \(1 RTST"):
        load_image(tmp_path / "rt")


def test_a_backslash_in_the_patient_name_is_kept_in_every_dicom_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.io.dicom_outputs import write_dicom_outputs
    from medunet.io.rtstruct import ContourLimits
    from medunet.metrics.measurements import segment_measurements

    files = _series(tmp_path / "s")
    for path in files:  # "\" is DICOM's value delimiter: the name reads as two values
        ds = pydicom.dcmread(path)
        ds.PatientName = "Planted^Name\\Second^Value"
        ds.save_as(path)
    volume = load_image(tmp_path / "s")
    labels = (volume[0].numpy() > 200).astype(np.uint8)
    segments = [SegmentSpec(1, "object")]
    measurements = segment_measurements(labels, volume.affine.numpy(), volume[0].numpy())
    with caplog.at_level("WARNING", logger="medunet.io.dicom_seg"):
        written = write_dicom_outputs(labels, volume.meta, tmp_path, "s", segments, measurements, ContourLimits())
    assert [p.name for p in written] == ["s_seg.dcm", "s_sr.dcm", "s_rtstruct.dcm"]
    source = pydicom.dcmread(files[0])
    for path in written:
        output = pydicom.dcmread(path)
        assert output["PatientName"].VM == 2, path.name
        assert str(output.PatientName) == str(source.PatientName), path.name
    assert (
        "PatientName of the source series has 2 values (a backslash in the name); copied unchanged into the SEG"
        in caplog.text
    )
    assert "copied unchanged into the SR" in caplog.text
    assert "Planted" not in caplog.text  # the warning names no patient
