"""`medunet segment`: a bundle folder (or a shipped model) applied to images and volumes without training."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from medunet.apps.segment import model_summary, resolve_model, segment, shipped_models
from medunet.cli import main
from medunet.io.dicom_seg import read_dicom_seg
from medunet.networks import ValidUNet

REPO = Path(__file__).resolve().parents[2]
SMALL = {"features": [4, 8, 16], "output_tile": [36, 36]}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nuclei bundle's configs with a small random network as its weights, and a model card."""
    folder = tmp_path_factory.mktemp("models") / "tiny"
    shutil.copytree(REPO / "bundles" / "nuclei" / "configs", folder / "configs")
    for name in ("inference.json", "train.json"):
        config = json.loads((folder / "configs" / name).read_text())
        config.update(SMALL)
        (folder / "configs" / name).write_text(json.dumps(config, indent=1))
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 3, features=SMALL["features"], dropout=0.0)
    (folder / "models").mkdir()
    torch.save({"model": net.state_dict()}, folder / "models" / "model.pt")
    (folder / "docs").mkdir()
    (folder / "docs" / "README.md").write_text("# tiny\n\nA small random network, for tests.\n\nMore.\n")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(60, 80), (50, 50)]):
        Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(folder / f"cells{i}.png")
    return folder


def test_a_folder_gets_instances_overlays_and_the_per_instance_table(
    bundle: Path, images: Path, tmp_path: Path
) -> None:
    report = segment(bundle, images, tmp_path / "out", settings={"device": "cpu"}, progress=False)
    assert sorted(Path(k).name for k in report.outputs) == ["cells0.png", "cells1.png"]
    assert report.seconds_per_megapixel is not None
    assert report.megapixels == pytest.approx((60 * 80 + 50 * 50) / 1e6)
    out = tmp_path / "out"
    for name, shape in (("cells0", (60, 80)), ("cells1", (50, 50))):
        for suffix in ("_seg.png", "_instances.png", "_overlay.png", "_instances.csv", "_instances.json"):
            assert (out / f"{name}{suffix}").is_file(), f"{name}{suffix}"
        instances = np.asarray(Image.open(out / f"{name}_instances.png"))
        assert instances.shape == shape
        rows = list(csv.DictReader((out / f"{name}_instances.csv").open()))
        assert [int(r["label"]) for r in rows] == [int(v) for v in np.unique(instances) if v]
        for row in rows:
            label = int(row["label"])
            assert int(row["area_px"]) == int((instances == label).sum())
            assert 0.0 <= float(row["mean_probability"]) <= 1.0
            assert row["area"] == ""  # a PNG has no pixel size
        records = json.loads((out / f"{name}_instances.json").read_text())["instances"]
        assert [r["label"] for r in records] == [int(r["label"]) for r in rows]


def test_the_cli_lists_models_and_names_bad_input(bundle: Path, images: Path, tmp_path: Path, capsys) -> None:
    assert model_summary(bundle) == "A small random network, for tests."
    assert shipped_models(bundle.parent) == {"tiny": bundle}
    assert resolve_model("tiny", root=bundle.parent) == (bundle, bundle / "models" / "model.pt")
    with pytest.raises(SystemExit, match=r"--model nope: not a shipped model and not a bundle folder"):
        main(["segment", "--model", "nope", str(images), "-o", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match=r"give INPUT, -o/--output"):
        main(["segment", "--model", str(bundle)])
    with pytest.raises(SystemExit, match=r"missing\.pt does not exist"):
        main(["segment", "--model", str(bundle), "--checkpoint", str(tmp_path / "missing.pt"), str(images), "-o", "x"])
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match=r"corrupt\.pt"):
        main(["segment", "--model", str(bundle), "--checkpoint", str(tmp_path / "corrupt.pt"), str(images), "-o", "x"])
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 8), np.float32), np.eye(4)), tmp_path / "volume.nii.gz")
    with pytest.raises(SystemExit, match=r"volume\.nii\.gz"):
        main(["segment", "--model", str(bundle), str(tmp_path / "volume.nii.gz"), "-o", str(tmp_path / "o")])
    assert main(["segment", "--model", str(bundle), str(images / "cells1.png"), "-o", str(tmp_path / "one"),
                 "--device", "cpu"]) == 0  # fmt: skip
    assert "1 input(s) segmented" in capsys.readouterr().out


def test_a_zarr_goes_the_blockwise_way_into_an_ome_zarr_with_instances(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    data = np.random.default_rng(1).integers(0, 256, (90, 70)).astype(np.uint8)
    zarr.create_array(str(tmp_path / "big.zarr"), shape=data.shape, chunks=(32, 32), dtype="uint8")[:] = data
    settings = {"device": "cpu", "torch_threads": 1, "intensity_scale": 1 / 255}
    report = segment(bundle, tmp_path / "big.zarr", tmp_path / "out", settings=settings, progress=False)
    target = tmp_path / "out" / "big.ome.zarr"
    assert report.outputs == {str(tmp_path / "big.zarr"): [str(target)]}
    assert zarr.open_array(str(target / "0")).shape == (90, 70)
    assert zarr.open_array(str(target / "labels" / "instances" / "0")).shape == (90, 70)


@pytest.fixture(scope="module")
def two_series_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unet3d bundle made a two-series model (T1post and FLAIR as channels), a small random network."""
    folder = tmp_path_factory.mktemp("models") / "tumour_like"
    shutil.copytree(REPO / "bundles" / "unet3d", folder, ignore=shutil.ignore_patterns("models"))
    settings = {"in_channels": 2, "channel_series": ["(?i)t1post", "(?i)flair"], "features": [4, 8, 16],
                "pool_sizes": [[2, 2, 1], [2, 2, 1]], "output_tile": [36, 36, 8], "intensity_preset": "mr",
                "write_rtstruct": True}  # fmt: skip
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config.update(settings)
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    torch.manual_seed(0)
    net = ValidUNet(
        3, 2, 2, features=settings["features"], norm="batch", dropout=0.0, pool_sizes=settings["pool_sizes"]
    )
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 0.3]))  # predict some foreground
    (folder / "models").mkdir()
    torch.save({"model": net.state_dict()}, folder / "models" / "model.pt")
    return folder


def test_a_study_folder_is_one_case_of_a_two_series_model(two_series_bundle: Path, tmp_path: Path) -> None:
    """A hospital's study export (more series than the model takes) needs no option: the bundle's channel_series
    pick T1post and FLAIR; the SEG references the reference series (T1post)."""
    import pydicom

    from medunet.data.dicom import write_dicom_series

    study = tmp_path / "export" / "study1"
    rng = np.random.default_rng(0)
    uids = {}
    for name in ("T1post", "FLAIRreg", "ADC", "MaskTumor"):
        files = write_dicom_series(rng.uniform(0, 500, (40, 36, 6)).astype(np.float32), study / name, modality="MR",
                                   rescale=(1.0, 0.0), series_description=name, study_uid="1.2.826.0.1.3680043.10.1",
                                   frame_of_reference_uid="1.2.826.0.1.3680043.10.2")  # fmt: skip
        uids[name] = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    report = segment(two_series_bundle, tmp_path / "export", tmp_path / "out", settings={"device": "cpu"},
                     progress=False)  # fmt: skip
    assert list(report.outputs) == [str(study)]
    written = {Path(p).name for p in report.outputs[str(study)]}
    assert any(name.endswith("_seg.nii.gz") for name in written), written
    segs = [p for p in report.outputs[str(study)] if p.endswith("_seg.dcm")]
    assert len(segs) == 1
    seg = pydicom.dcmread(segs[0])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["T1post"]
    labels = nib.load(next(p for p in report.outputs[str(study)] if p.endswith("_seg.nii.gz"))).get_fdata()
    assert labels.shape == (40, 36, 6)
    # --seg-type labelmap: a label-map SEG of the same labels
    assert main(["segment", str(tmp_path / "export"), "-o", str(tmp_path / "labelmap"), "--model",
                 str(two_series_bundle), "--device", "cpu", "--seg-type", "labelmap"]) == 0  # fmt: skip
    labelmap = pydicom.dcmread(next((tmp_path / "labelmap").glob("*_seg.dcm")))
    assert (seg.SegmentationType, labelmap.SegmentationType) == ("BINARY", "LABELMAP")
    sources = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (study / "T1post").iterdir()]
    order = [s.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(order) == sorted(sources)
    np.testing.assert_array_equal(read_dicom_seg(labelmap.filename, order), read_dicom_seg(segs[0], order))

    with pytest.raises(ValueError, match="reads a DICOM study's series"):
        segment(two_series_bundle, next((study / "T1post").iterdir()), tmp_path / "out2", progress=False)
    shutil.rmtree(study / "FLAIRreg")
    with pytest.raises(Exception, match=r"'\(\?i\)flair' matches no series") as caught:
        segment(two_series_bundle, tmp_path / "export", tmp_path / "out3", progress=False)
    for name in ("T1post", "ADC", "MaskTumor"):  # every series is listed (ordered by their random UIDs)
        assert f"description='{name}'" in str(caught.value)
    assert not (tmp_path / "out3").exists()
