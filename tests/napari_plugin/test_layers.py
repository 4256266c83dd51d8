"""The napari plugin's work without Qt: a layer's data segmented exactly as `medunet segment` segments the file,
the dimensionality and model checks, the features table, and the reader of medunet's outputs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from medunet.apps.segment import segment
from medunet.napari_plugin.layers import LayerError, available_models, read_features, segment_layer
from medunet.napari_plugin.reader import get_reader, read
from medunet.networks import ValidUNet
from tests.conftest import REPO

pytest.importorskip("dask")

# a DSB 2018 image as napari's built-in reader opens it: RGBA uint8, (rows, columns, 4)
NUCLEI_IMAGE = "dsb2018_nuclei/images/04acab7636c4.png"


def nuclei_image(folder: Path) -> Path:
    """A DSB 2018 image where the data sets are, else a generated cell image (written into ``folder``)."""
    from tests.conftest import data_root

    if (data_root() / NUCLEI_IMAGE).is_file():
        return data_root() / NUCLEI_IMAGE
    from medunet.data.synthetic import synthetic_cells

    image, _ = synthetic_cells((128, 160), seed=3)
    path = folder / "cells.png"
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unet3d bundle with a small network of fixed random weights (anisotropic pooling, so axis order matters)."""
    folder = tmp_path_factory.mktemp("bundles") / "tiny3d"
    shutil.copytree(REPO / "bundles" / "unet3d", folder, ignore=shutil.ignore_patterns("models"))
    small = {"features": [4, 8, 16], "pool_sizes": [[2, 2, 1], [2, 2, 1]], "output_tile": [36, 36, 8],
             "intensity_preset": "mr"}  # fmt: skip
    config = json.loads((folder / "configs" / "inference.json").read_text())
    (folder / "configs" / "inference.json").write_text(json.dumps({**config, **small}, indent=1))
    torch.manual_seed(0)
    net = ValidUNet(3, 1, 2, features=small["features"], norm="batch", dropout=0.0, pool_sizes=small["pool_sizes"])
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 0.3]))
    (folder / "models").mkdir()
    torch.save({"model": net.state_dict()}, folder / "models" / "model.pt")
    return folder


def test_the_shipped_models_are_offered_with_summaries_and_dimensions() -> None:
    models = {m.name: m for m in available_models()}
    assert {"nuclei", "em_membranes", "brain_tumour_mr"} <= set(models)
    assert models["nuclei"].spatial_dims == 2
    assert models["brain_tumour_mr"].spatial_dims == 3
    assert all(m.summary for m in models.values())


def test_a_2d_layer_gets_the_labels_of_medunet_segment(tmp_path: Path) -> None:
    """The shipped nuclei model on an RGBA layer: 0 pixels differ from `medunet segment` on the file."""
    import imageio.v3 as iio

    path = nuclei_image(tmp_path)

    layer = iio.imread(path)  # what napari's built-in reader gives
    steps: list[str] = []
    result = segment_layer("nuclei", layer, name=path.stem, rgb=layer.ndim == 3, scale=(1.0, 1.0),
                           progress=steps.append)  # fmt: skip
    report = segment("nuclei", path, tmp_path / "cli", progress=False)
    written = {Path(p).name: Path(p) for p in report.outputs[str(path)]}
    classes = np.asarray(Image.open(written[f"{path.stem}_seg.png"]))
    instances = np.asarray(Image.open(written[f"{path.stem}_instances.png"]))
    assert result.labels.shape == layer.shape[:2]
    assert int((result.labels != classes).sum()) == 0
    assert int((result.instances != instances).sum()) == 0
    assert instances.max() > 0
    features = result.features
    assert features is not None
    assert features["index"] == list(range(int(instances.max()) + 1))  # row k describes label k
    assert features["area_px"][0] is None  # the background row
    assert features["area_px"][1:] == [int((instances == k).sum()) for k in range(1, int(instances.max()) + 1)]
    assert steps == [f"segmenting {path.stem} with nuclei", "reading the results"]


def test_a_3d_layer_in_napari_order_is_segmented_as_its_nifti(tiny3d: Path, tmp_path: Path) -> None:
    """A (z, y, x) layer with its scale = `medunet segment` on the (x, y, z) NIfTI with that voxel size."""
    volume = np.random.default_rng(0).uniform(0, 400, (10, 44, 40)).astype(np.float32)  # (z, y, x)
    scale = (3.0, 0.8, 0.7)
    result = segment_layer(tiny3d, volume, name="mr", scale=scale)
    nib.save(nib.Nifti1Image(np.transpose(volume, (2, 1, 0)), np.diag([0.7, 0.8, 3.0, 1.0])), tmp_path / "mr.nii.gz")
    report = segment(tiny3d, tmp_path / "mr.nii.gz", tmp_path / "cli", progress=False)
    seg = next(Path(p) for p in report.outputs[str(tmp_path / "mr.nii.gz")] if p.endswith("_seg.nii.gz"))
    expected = np.transpose(np.asarray(nib.load(seg).dataobj), (2, 1, 0))
    assert result.labels.shape == volume.shape
    assert 0 < int(expected.sum()) < expected.size
    assert int((result.labels != expected).sum()) == 0


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One local dask cluster for both blockwise runs of a test (its worker imports medunet once, not per run)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_a_dask_layer_goes_the_blockwise_way_and_comes_back_lazily(
    tiny3d: Path, scheduler: str, tmp_path: Path
) -> None:
    import dask.array as da

    volume = np.random.default_rng(1).uniform(0, 400, (12, 50, 46)).astype(np.float32)
    layer = da.from_array(volume, chunks=(6, 25, 23))
    settings = {"scheduler": scheduler}
    result = segment_layer(tiny3d, layer, name="big", scale=(1.0, 1.0, 1.0), settings=settings,
                           output_dir=tmp_path / "napari")  # fmt: skip
    assert result.blockwise
    assert isinstance(result.labels, da.Array)
    zarr.create_array(str(tmp_path / "big.zarr"), shape=volume.shape, chunks=(6, 25, 23), dtype="float32")[:] = volume
    report = segment(tiny3d, tmp_path / "big.zarr", tmp_path / "cli", settings=settings, progress=False)
    expected = zarr.open_array(str(Path(report.outputs[str(tmp_path / "big.zarr")][0]) / "0"))[:]
    assert result.labels.shape == volume.shape
    assert int((result.labels.compute() != expected).sum()) == 0
    assert result.instances is not None
    assert result.instances.shape == volume.shape
    # the reader opens that OME-Zarr: the class labels and its instance labels, lazily, on the same grid
    target = report.outputs[str(tmp_path / "big.zarr")][0]
    assert get_reader(target) is read
    layers = read(target)
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    assert layers[1][1]["name"] == "big instances"
    assert all(layer.shape == volume.shape for layer, _, _ in layers)
    np.testing.assert_array_equal(np.asarray(layers[0][0]), expected)


def test_layers_that_do_not_fit_and_models_that_do_not_load_are_named(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match=r"layer 'stack' has 3 spatial axes \(shape \(4, 32, 32\)\).*model 'nuclei' "
                                         r"segments 2D images. Choose a 3D model, or a 2D layer"):  # fmt: skip
        segment_layer("nuclei", np.zeros((4, 32, 32), np.uint8), name="stack")
    with pytest.raises(LayerError, match=r"is an RGB image .* model 'brain_tumour_mr' segments 3D volumes"):
        segment_layer("brain_tumour_mr", np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    with pytest.raises(ValueError, match=r"not a shipped model and not a bundle folder.*shipped models: .*nuclei"):
        segment_layer("no_such_model", np.zeros((32, 32), np.uint8))
    (tmp_path / "bundle" / "configs").mkdir(parents=True)
    shutil.copy(REPO / "bundles" / "unet2d" / "configs" / "inference.json", tmp_path / "bundle" / "configs")
    with pytest.raises(FileNotFoundError, match="has no trained weights"):
        segment_layer(tmp_path / "bundle", np.zeros((32, 32), np.uint8))


def test_features_have_a_row_per_label_value(tmp_path: Path) -> None:
    records = [{"label": 1, "area_px": 10, "unit": None, "centroid": [2.5, 3.0]},
               {"label": 3, "area_px": 7, "unit": "mm", "centroid": [1.0, 0.5]}]  # fmt: skip
    (tmp_path / "t_instances.json").write_text(json.dumps({"source": "t.png", "instances": records}))
    features = read_features(tmp_path / "t_instances.json", count=4)
    assert features == {
        "index": [0, 1, 2, 3, 4],
        "area_px": [None, 10, None, 7, None],
        "unit": [None, None, None, "mm", None],
        "centroid-0": [None, 2.5, None, 1.0, None],  # a column per axis: napari's table holds one value a cell
        "centroid-1": [None, 3.0, None, 0.5, None],
    }


def test_the_reader_opens_niftis_in_napari_order(tmp_path: Path) -> None:
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (x, y, z)
    affine = np.diag([0.5, 0.6, 2.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "case.nii.gz")
    nib.save(nib.Nifti1Image(volume.astype(np.uint8), affine), tmp_path / "case_seg.nii.gz")
    assert get_reader(str(tmp_path / "case.nii.gz")) is read
    assert get_reader(str(tmp_path / "notes.txt")) is None
    [(image, meta, kind)], [(_labels, _, label_kind)] = (
        read(str(tmp_path / "case.nii.gz")),
        read(str(tmp_path / "case_seg.nii.gz")),
    )
    assert (kind, label_kind) == ("image", "labels")
    np.testing.assert_array_equal(image, np.transpose(volume, (2, 1, 0)))
    assert meta["scale"] == pytest.approx([2.0, 0.6, 0.5])
    assert meta["translate"] == pytest.approx([30.0, 20.0, 10.0])
