"""DICOM series loading against SimpleITK, on the real TCIA study and on generated series."""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medunet.data.dicom import write_dicom_series
from medunet.io import DicomSeriesError, load_image, scan_dicom_folder
from tests.conftest import require

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
TCIA_SERIES = ["T1post", "FLAIRreg", "MaskTumor"]


def sitk_read(folder: Path, series_uid: str | None = None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder), series_uid or "")
    reader.SetFileNames(names)
    return reader.Execute()


def assert_matches_sitk(image, reference: sitk.Image, atol: float = 1e-4) -> None:
    assert tuple(image.shape[1:]) == reference.GetSize()
    lps = LPS @ np.asarray(image.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    np.testing.assert_allclose(spacing, reference.GetSpacing(), atol=atol)
    np.testing.assert_allclose(lps[:3, 3], reference.GetOrigin(), atol=atol)
    np.testing.assert_allclose(lps[:3, :3] / spacing, np.array(reference.GetDirection()).reshape(3, 3), atol=atol)
    expected = sitk.GetArrayFromImage(reference).transpose(2, 1, 0)
    np.testing.assert_array_equal(np.asarray(image[0]), expected)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tcia(shared_data: Path) -> Path:
    return require(shared_data / "tcia_pgbm001_dicom")


@pytest.mark.parametrize("series", TCIA_SERIES)
def test_tcia_series_match_simpleitk(tcia: Path, series: str) -> None:
    before = tree_digest(tcia / series)
    image = load_image(tcia / series)
    assert_matches_sitk(image, sitk_read(tcia / series))
    assert image.meta["Modality"] == "MR"
    assert len(image.meta["SOPInstanceUIDs"]) == 24
    assert tree_digest(tcia / series) == before  # inputs are never modified


def test_tcia_mask_aligns_with_t1post(tcia: Path) -> None:
    t1 = load_image(tcia / "T1post")
    mask = load_image(tcia / "MaskTumor")
    assert mask.shape == t1.shape
    np.testing.assert_allclose(np.asarray(mask.affine), np.asarray(t1.affine), atol=1e-3)
    assert int(mask.sum()) == 6809
    assert set(np.unique(np.asarray(mask))) == {0.0, 1.0}
    assert mask.meta["FrameOfReferenceUID"] == t1.meta["FrameOfReferenceUID"]


def test_tcia_study_folder_lists_series_or_selects(tcia: Path) -> None:
    series = scan_dicom_folder(tcia)
    assert len(series) == 3
    with pytest.raises(DicomSeriesError, match="holds 3 DICOM series") as err:
        load_image(tcia)
    for info in series:
        assert info.series_uid in str(err.value)
        assert f"description={info.description!r}" in str(err.value)
    assert "slices=24" in str(err.value)
    flair = load_image(tcia, description="flair")
    assert flair.meta["SeriesDescription"] == "FLAIR_reg"
    by_uid = load_image(tcia, series_uid=series[0].series_uid)
    assert by_uid.meta["SeriesInstanceUID"] == series[0].series_uid
    with pytest.raises(DicomSeriesError, match=r"no series .* matches"):
        load_image(tcia, modality="CT")


def test_shuffled_instance_numbers_load_in_geometric_order(tcia: Path, tmp_path: Path) -> None:
    """MONAI's PydicomReader sorts by InstanceNumber; positions decide here."""
    rng = np.random.default_rng(0)
    files = sorted((tcia / "T1post").glob("*.dcm"))
    numbers = rng.permutation(len(files)) + 1
    for f, n in zip(files, numbers):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = int(n)
        ds.save_as(tmp_path / f"x{n:03d}.dcm")
    assert_matches_sitk(load_image(tmp_path), sitk_read(tcia / "T1post"))


def test_two_series_in_one_folder_are_not_stacked(tcia: Path, tmp_path: Path) -> None:
    for series in ("T1post", "FLAIRreg"):
        for f in (tcia / series).glob("*.dcm"):
            shutil.copy(f, tmp_path / f"{series}_{f.name}")
    with pytest.raises(DicomSeriesError, match="holds 2 DICOM series"):
        load_image(tmp_path)
    t1 = load_image(tmp_path, description="^T1")
    assert t1.shape == (1, 260, 320, 24)
    assert_matches_sitk(t1, sitk_read(tcia / "T1post"))


def test_loading_needs_no_itk_package(tcia: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "itk", None)  # import itk now fails
    with pytest.raises(ImportError):
        import itk  # noqa: F401
    assert load_image(tcia / "MaskTumor").shape == (1, 260, 320, 24)


def _oblique() -> np.ndarray:
    a, b = np.radians(12.0), np.radians(-7.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


@pytest.fixture
def generated(tmp_path: Path) -> tuple[Path, np.ndarray]:
    volume = np.random.default_rng(3).integers(-1024, 2000, size=(33, 27, 9)).astype(np.float32)
    folder = tmp_path / "series"
    write_dicom_series(
        volume,
        folder,
        spacing=(0.7, 0.9, 2.5),
        origin=(5.0, -12.0, 40.0),
        direction=_oblique(),
        rescale=(2.0, -1024.0),
        instance_numbers=[9, 3, 1, 7, 2, 8, 6, 4, 5],
    )
    return folder, volume


def test_generated_oblique_series_with_rescale(generated: tuple[Path, np.ndarray]) -> None:
    folder, volume = generated
    (folder / "README.txt").write_text("not DICOM")
    (folder / "notes.json").write_text("{}")
    image = load_image(folder)
    np.testing.assert_allclose(np.asarray(image[0]), np.round((volume + 1024) / 2) * 2 - 1024)
    assert_matches_sitk(image, sitk_read(folder))


def test_missing_slice_is_an_error_or_a_warning(
    generated: tuple[Path, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    folder, _ = generated
    (folder / "slice_0004.dcm").unlink()
    with pytest.raises(DicomSeriesError, match=r"not evenly spaced; the step is 2\.500 mm except 5\.000 mm between"):
        load_image(folder)
    with caplog.at_level(logging.WARNING):
        image = load_image(folder, on_irregular="warn")
    assert image.shape == (1, 33, 27, 8)
    assert "not evenly spaced" in caplog.text


def test_corrupt_and_empty_inputs_name_the_problem(generated: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    folder, _ = generated
    victim = folder / "slice_0002.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated pixel data
    with pytest.raises(DicomSeriesError, match=r"slice_0002\.dcm"):
        load_image(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DicomSeriesError, match="no DICOM files in"):
        load_image(empty)
    (empty / "a.txt").write_text("hello")
    with pytest.raises(DicomSeriesError, match="1 files checked"):
        load_image(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nowhere")


def test_single_dcm_file_loads_its_series(generated: tuple[Path, np.ndarray]) -> None:
    folder, volume = generated
    image = load_image(folder / "slice_0003.dcm")
    assert image.shape == (1, *volume.shape)


def _without_uids(folder: Path) -> None:
    """What some anonymisers do: Study, Series and SOP Instance UIDs emptied."""
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path)


def test_files_with_empty_uids_load_grouped_by_geometry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 500, size=(12, 10, 5)).astype(np.float32)
    write_dicom_series(volume, tmp_path / "one", modality="MR", rescale=(1.0, 0.0))
    _without_uids(tmp_path / "one")
    # the same folder with a second acquisition of another image size: two volumes, told apart by geometry
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    write_dicom_series(np.zeros((16, 14, 4), np.float32), tmp_path / "two", modality="MR", rescale=(1.0, 0.0),
                       file_names=[f"b{k}.dcm" for k in range(4)])  # fmt: skip
    _without_uids(tmp_path / "two")
    with caplog.at_level(logging.WARNING):
        image = load_image(tmp_path / "one")
    np.testing.assert_array_equal(np.asarray(image)[0], volume)
    assert "5 DICOM files have no SeriesInstanceUID (an anonymised export?); grouped by modality" in caplog.text
    assert image.meta["SeriesInstanceUID"].startswith("2.25.")
    assert image.meta["SeriesInstanceUID"] == load_image(tmp_path / "one").meta["SeriesInstanceUID"]  # stable
    series = scan_dicom_folder(tmp_path / "two")
    assert sorted(len(s.files) for s in series) == [4, 5]
    assert len({s.series_uid for s in series}) == 2
    with pytest.raises(DicomSeriesError, match="holds 2 DICOM series; choose one on the bundle command line"):
        load_image(tmp_path / "two")
