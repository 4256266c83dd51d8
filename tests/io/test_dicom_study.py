"""A study of several DICOM series as one multi-channel image on the reference series' grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from medunet.data.dicom import write_dicom_series
from medunet.io import DicomSeriesError, load_image
from medunet.io.dicom_study import DicomStudyReader, read_study_channels
from tests.conftest import require

SHAPE = (12, 10, 6)  # (x, y, z); 1 x 1 x 2 mm


def world_z(origin_z: float) -> np.ndarray:
    """A volume whose value is its voxels' world z (mm) plus 10: linear, so resampling reproduces it exactly."""
    z = origin_z + 2.0 * np.arange(SHAPE[2])
    return np.broadcast_to(z + 10.0, SHAPE).copy()


def write_study(root: Path, mask: np.ndarray | None = None, **changed: dict) -> None:
    common = {"spacing": (1.0, 1.0, 2.0), "modality": "MR", "rescale": (1.0, 0.0), "study_uid": "1.2.3.4",
              "frame_of_reference_uid": "1.2.3.5"}  # fmt: skip
    write_dicom_series(world_z(0.0), root / "t1", series_description="T1post", **common, **changed.get("t1", {}))
    shifted = {**common, "origin": (0.0, 0.0, 2.0), **changed.get("flair", {})}  # one slice further
    write_dicom_series(world_z(2.0), root / "flair", series_description="FLAIRreg", **shifted)
    if mask is not None:
        write_dicom_series(mask, root / "mask", series_description="MaskTumor", **shifted)


def test_channels_are_resampled_into_the_reference_grid(tmp_path: Path) -> None:
    mask = np.zeros(SHAPE)
    mask[3:6, 2:5, 1:3] = 1  # world z 4 and 6 mm
    write_study(tmp_path, mask)
    study = read_study_channels(tmp_path, ["(?i)t1post", "(?i)flair"], label="(?i)mask")
    assert [c.description for c in study.channels] == ["T1post", "FLAIRreg"]
    assert study.label_series is not None
    assert study.label_series.description == "MaskTumor"
    assert study.image.shape == (2, *SHAPE)
    assert study.image.dtype == np.float32
    np.testing.assert_allclose(study.image[0], world_z(0.0))
    # FLAIR starts 2 mm (one reference slice) further: the reference's first slice lies outside it (0), the others
    # carry the same world z
    np.testing.assert_allclose(study.image[1][..., 1:], world_z(0.0)[..., 1:], atol=1e-4)
    assert np.all(study.image[1][..., 0] == 0)
    # the mask in world coordinates: its slices 1-2 (world 4, 6 mm) are the reference's slices 2-3
    expected = np.zeros(SHAPE, np.uint8)
    expected[3:6, 2:5, 2:4] = 1
    np.testing.assert_array_equal(study.label, expected)
    np.testing.assert_allclose(study.affine_lps, study.reference.affine_lps)


def test_monai_loads_a_study_as_image_and_label(tmp_path: Path) -> None:
    from monai.transforms import LoadImaged

    mask = np.zeros(SHAPE)
    mask[3:6, 2:5, 1:3] = 1
    write_study(tmp_path, mask)
    channels = ["(?i)t1post", "(?i)flair"]
    image = LoadImaged("image", reader=DicomStudyReader(channels), ensure_channel_first=True)({"image": tmp_path})
    label = LoadImaged("label", reader=DicomStudyReader(channels, label="(?i)mask"), ensure_channel_first=True)(
        {"label": tmp_path}
    )
    assert image["image"].shape == (2, *SHAPE)
    assert label["label"].shape == (1, *SHAPE)
    np.testing.assert_allclose(image["image"].affine, label["label"].affine)
    assert image["image"].meta["SeriesDescription"] == "T1post"  # the reference: what a SEG references
    assert image["image"].meta["ChannelSeriesDescriptions"] == ["T1post", "FLAIRreg"]
    assert int(label["label"].sum()) == 18
    with pytest.raises(ValueError, match="channels must be a list"):
        DicomStudyReader("T1post")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["(?i)t2"], r"channel pattern '\(\?i\)t2' matches no series"),
        (["(?i)post|flair"], r"channel pattern '\(\?i\)post\|flair' matches 2 series"),
        (["(?i)t1post", "(?i)t1"], "which an earlier pattern chose already"),
    ],
)
def test_patterns_must_each_match_one_series(tmp_path: Path, patterns: list[str], message: str) -> None:
    write_study(tmp_path)
    with pytest.raises(DicomSeriesError, match=message) as err:
        read_study_channels(tmp_path, patterns)
    assert "T1post" in str(err.value)
    assert "FLAIRreg" in str(err.value)  # every series listed


def test_series_of_other_studies_or_frames_are_refused(tmp_path: Path) -> None:
    write_study(tmp_path / "a", flair={"study_uid": "9.9.9"})
    with pytest.raises(DicomSeriesError, match=r"belongs to study 9\.9\.9"):
        read_study_channels(tmp_path / "a", ["T1post", "FLAIR"])
    write_study(tmp_path / "b", flair={"frame_of_reference_uid": "9.9.8"})
    with pytest.raises(DicomSeriesError, match=r"FrameOfReferenceUID 9\.9\.8.*register them first"):
        read_study_channels(tmp_path / "b", ["T1post", "FLAIR"])


def test_a_mask_must_hold_0_and_1(tmp_path: Path) -> None:
    mask = np.zeros(SHAPE)
    mask[2:4, 2:4, 2] = 255
    write_study(tmp_path, mask)
    with pytest.raises(DicomSeriesError, match="has values 0, 255; a tumour mask must hold 0"):
        read_study_channels(tmp_path, ["T1post"], label="Mask")
    with pytest.raises(ValueError, match="is not a regular expression"):
        read_study_channels(tmp_path, ["T1post("])


def test_tcia_study_on_the_t1post_grid(shared_data: Path) -> None:
    """A real study: FLAIR and the tumour mask resampled onto the T1post grid keep the mask's tumour volume."""
    folder = require(shared_data / "tcia_pgbm_tumor") / "PGBM-001" / "1991-11-19"
    study = read_study_channels(folder, ["(?i)t1post", "(?i)flair"], label="(?i)mask")
    assert study.image.shape[1:] == study.reference.array.shape
    assert study.label is not None
    header = pydicom.dcmread(study.reference.files[0], stop_before_pixels=True)
    assert study.reference.frame_of_reference_uid == str(header.FrameOfReferenceUID)
    assert study.label.sum() == pytest.approx(2641, rel=0.05)  # SOURCE.md: 2,641 tumour voxels in this study
    assert study.image[1][study.label > 0].mean() > study.image[1][study.label == 0].mean()  # FLAIR bright in tumour


def test_one_study_folder_is_image_and_label_of_a_data_list_entry(tmp_path: Path) -> None:
    from medunet.transforms import LoadImageOrSeriesd

    mask = np.zeros(SHAPE)
    mask[3:6, 2:5, 1:3] = 1
    write_study(tmp_path, mask)
    load = LoadImageOrSeriesd(["image", "label"], label_keys="label", channels=["T1post", "FLAIR"], label_series="Mask")
    data = load({"image": tmp_path, "label": tmp_path})
    assert data["image"].shape == (2, *SHAPE)
    assert data["label"].shape == (1, *SHAPE)
    assert data["label"].dtype == torch.uint8  # a label keeps its integer type
    assert int(data["label"].sum()) == 18
    with pytest.raises(ValueError, match="choose series of a DICOM study folder"):
        load_image(tmp_path / "t1" / sorted(p.name for p in (tmp_path / "t1").iterdir())[0], channels=["T1post"])
    with pytest.raises(ValueError, match="label_series='Mask' needs channels"):
        load_image(tmp_path, label_series="Mask")


def test_a_dicom_seg_drawn_on_flair_is_the_label_on_the_reference_grid(tmp_path: Path) -> None:
    """Labels may come as a DICOM SEG instead of a mask series: read on the series it references (here FLAIR, one
    slice further than T1post), then resampled into the reference grid like a mask series."""
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.io.dicom_seg import build_dicom_seg

    write_study(tmp_path)
    flair = sorted((tmp_path / "flair").glob("*.dcm"), key=lambda p: int(pydicom.dcmread(p).InstanceNumber))
    headers = [pydicom.dcmread(p) for p in flair]
    drawn = np.zeros(SHAPE, np.uint8)
    drawn[3:6, 2:5, 1:3] = 1  # FLAIR slices 1-2: world z 4 and 6 mm
    seg = build_dicom_seg(drawn, headers, [SegmentSpec(1, "tumour")], series_description="Tumour SEG")
    (tmp_path / "seg").mkdir()
    seg.save_as(tmp_path / "seg" / "seg.dcm")
    study = read_study_channels(tmp_path, ["(?i)t1post", "(?i)flair"], label="(?i)tumour seg")
    expected = np.zeros(SHAPE, np.uint8)
    expected[3:6, 2:5, 2:4] = 1  # the reference's slices 2-3
    np.testing.assert_array_equal(study.label, expected)
    assert study.label_series is not None
    assert study.label_series.modality == "SEG"
    with pytest.raises(DicomSeriesError, match=r"references series .* none of the channel series 'T1post'"):
        read_study_channels(tmp_path, ["(?i)t1post"], label="(?i)tumour seg")
