"""Writing transforms: SaveImaged writes the same files as MONAI's, but a process killed mid-write leaves no file
under the output's name."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from medunet.transforms import SaveImaged

REPO = Path(__file__).resolve().parents[2]


def prediction(name: str, shape: tuple[int, ...]) -> MetaTensor:
    values = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(1, *shape) % 3
    affine = torch.diag(torch.tensor([0.5, 0.7, 2.0, 1.0], dtype=torch.float64))
    return MetaTensor(values, affine=affine, meta={"filename_or_obj": name})


@pytest.mark.parametrize(("ext", "shape"), [(".nii.gz", (6, 5, 4)), (".png", (6, 5))])
def test_save_imaged_writes_the_image_and_no_temporary(tmp_path: Path, ext: str, shape: tuple[int, ...]) -> None:
    save = SaveImaged(
        "pred", output_dir=tmp_path, output_postfix="seg", output_ext=ext, output_dtype=np.uint8,
        separate_folder=False, print_log=False,
    )  # fmt: skip
    pred = prediction(str(tmp_path / f"in/case.1.2{ext}"), shape)  # a dot in the name, as in DICOM UIDs
    save({"pred": pred})
    out = tmp_path / f"case.1.2_seg{ext}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [out.name]
    if ext == ".nii.gz":
        written = nib.load(out).get_fdata()
        np.testing.assert_allclose(nib.load(out).affine.diagonal(), [0.5, 0.7, 2.0, 1.0])
    else:
        written = np.asarray(Image.open(out)).T  # PIL is row-major; MONAI writes the first axis as x
    np.testing.assert_array_equal(written, pred[0].numpy())


KILLED_WRITER = """
import os, signal, sys
import nibabel, numpy as np, torch
from monai.data import MetaTensor
from monai.transforms import SaveImaged as MonaiSaveImaged
from medunet.transforms import SaveImaged

def half_then_killed(img, filename):
    with open(filename, "wb") as fh:
        fh.write(b"\\x1f\\x8b half of a NIfTI")
    os.kill(os.getpid(), signal.SIGKILL)

nibabel.save = half_then_killed
saver = MonaiSaveImaged if sys.argv[2] == "monai" else SaveImaged
pred = MetaTensor(torch.ones(1, 4, 4, 4), meta={"filename_or_obj": "case.nii.gz"})
saver("pred", output_dir=sys.argv[1], output_postfix="seg", separate_folder=False)({"pred": pred})
"""


def killed_while_writing(out: Path, saver: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out), saver], cwd=REPO, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]


def test_an_inference_killed_while_writing_leaves_no_output_that_looks_complete(tmp_path: Path) -> None:
    killed_while_writing(tmp_path / "monai", "monai")  # the reason for this transform: MONAI's writes in place
    assert (tmp_path / "monai" / "case_seg.nii.gz").exists()

    out = tmp_path / "medunet"
    killed_while_writing(out, "medunet")
    assert not (out / "case_seg.nii.gz").exists()
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1, left
    assert left[0].startswith(".case_seg.nii.gz.")
    assert left[0].endswith(".tmp.nii.gz")

    # the rerun writes the output and removes the dead writer's temporary
    pred = MetaTensor(torch.ones(1, 4, 4, 4), meta={"filename_or_obj": "case.nii.gz"})
    SaveImaged("pred", output_dir=out, output_postfix="seg", separate_folder=False, print_log=False)({"pred": pred})
    assert [p.name for p in out.iterdir()] == ["case_seg.nii.gz"]
    assert nib.load(out / "case_seg.nii.gz").get_fdata().sum() == 64


def test_dicom_seg_of_a_series_without_uids_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from medunet.data.dicom import write_dicom_series
    from medunet.io import load_image
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.transforms import SaveDicomSegd

    write_dicom_series(np.ones((8, 6, 3), np.float32), tmp_path / "case", modality="MR", rescale=(1.0, 0.0))
    for path in (tmp_path / "case").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path)
    image = load_image(tmp_path / "case")
    pred = MetaTensor(torch.ones(1, 8, 6, 3), meta=dict(image.meta))
    writer = SaveDicomSegd("pred", str(tmp_path / "out"), segments=[SegmentSpec(1, "foreground")])
    with caplog.at_level("WARNING"):
        writer({"pred": pred})
    assert not (tmp_path / "out").exists()
    assert "no DICOM SEG for" in caplog.text
    assert "have no SOPInstanceUID (an anonymised export)" in caplog.text


@pytest.mark.parametrize("seg_type", ["binary", "labelmap"])
def test_contours_beside_the_seg_and_what_they_leave_out_noted_in_the_sr(tmp_path: Path, seg_type: str) -> None:
    from medunet.data.dicom import write_dicom_series
    from medunet.io import load_image
    from medunet.io.dicom_derived import SegmentSpec
    from medunet.transforms import SaveDicomSegd, SaveMeasurementsd
    from tests.io.test_dicom_seg import DCIODVFY_LABELMAP_GAPS, dciodvfy_errors

    write_dicom_series(np.zeros((32, 32, 4), np.float32), tmp_path / "case", spacing=(1.0, 1.0, 3.0), modality="MR")
    image = load_image(tmp_path / "case")
    labels = np.zeros((1, 32, 32, 4), np.float32)
    labels[0, 8:20, 8:20] = 1  # a square lesion on every slice, 144 mm2
    labels[0, 28, 28] = labels[0, 2, 30] = 1  # two one-voxel specks per slice
    labels[0, 24:27, 2:5, 1] = 2  # a 9 mm2 second segment on one slice
    data = {"pred": MetaTensor(torch.as_tensor(labels), meta=dict(image.meta)), "image": image}
    segments = [SegmentSpec(1, "lesion"), SegmentSpec(2, "rod")]
    data = SaveMeasurementsd("pred", str(tmp_path / "out"), image_key="image")(data)
    SaveDicomSegd("pred", str(tmp_path / "out"), segments=segments, rtstruct=True, seg_type=seg_type)(data)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["case_measurements.json", "case_rtstruct.dcm", "case_seg.dcm", "case_sr.dcm"]
    assert pydicom.dcmread(tmp_path / "out" / "case_seg.dcm").SegmentationType == seg_type.upper()
    errors = dciodvfy_errors(tmp_path / "out" / "case_sr.dcm")
    assert not (set(errors) - DCIODVFY_LABELMAP_GAPS if seg_type == "labelmap" else errors), errors
    sr = pydicom.dcmread(tmp_path / "out" / "case_sr.dcm")
    groups = next(g for g in sr.ContentSequence if g.get("ValueType") == "CONTAINER").ContentSequence
    notes = {}
    for group in (g for g in groups if g.get("ValueType") == "CONTAINER"):
        texts = [i.TextValue for i in group.ContentSequence if i.get("ValueType") == "TEXT"]
        segment = next(t for t in texts if t.startswith("segment "))
        notes[segment] = [t for t in texts if t.startswith("RTSTRUCT")]  # TID 4019 Algorithm Parameters
    assert notes["segment 1"] == [
        "RTSTRUCT contours: 4 contours of 16 points, simplified within 0.5 px; 8 specks and 0 holes under 4 mm2 left out"
    ]
    assert notes["segment 2"] == [
        "RTSTRUCT contours: 1 contours of 4 points, simplified within 0.5 px; 0 specks and 0 holes under 4 mm2 left out"
    ]
