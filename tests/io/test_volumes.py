"""zarr, OME-Zarr and BigTIFF volumes: lazy views, NGFF metadata, load_image and the data list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from medunet.engines.data import inference_datalist
from medunet.io import load_image
from medunet.io.volumes import VolumeError, create_volume, export_tiff, open_volume


def _ome(path: Path, data: np.ndarray, axes: tuple[str, ...] = ("z", "y", "x")) -> None:
    create_volume(path, data.shape, data.dtype, data.shape, axes, (2.0, 0.5, 0.25), (10.0, 1.0, -3.0),
                  "micrometer")[:] = data  # fmt: skip


def test_ome_zarr_geometry_and_channel_first_view(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5 * 6, dtype=np.uint16).reshape(3, 4, 5, 6)
    _ome(tmp_path / "img.ome.zarr", data, ("c", "z", "y", "x"))
    volume = open_volume(tmp_path / "img.ome.zarr")
    assert volume.kind == "ome-zarr"
    assert volume.axes == ("c", "z", "y", "x")
    assert volume.voxel_size == (2.0, 0.5, 0.25)
    assert volume.origin == (10.0, 1.0, -3.0)
    assert volume.unit == "micrometer"
    assert volume.spatial_shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.channel_first[:, 1:3, :, 2:4], data[:, 1:3, :, 2:4])


def test_a_plain_array_and_a_group_with_one_array(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("raw", shape=(2, 4, 5, 6), dtype="uint8")[:] = 7  # (c, z, y, x)
    view = open_volume(tmp_path / "group.zarr").channel_first
    assert view.shape == (2, 4, 5, 6)
    assert (view[:, 1:2] == 7).all()
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(4, 5, 6), dtype="float32")[:] = 1.5
    plain = open_volume(tmp_path / "plain.zarr")
    assert plain.kind == "zarr"
    assert plain.channel_first.shape == (1, 4, 5, 6)
    assert plain.voxel_size == (1.0, 1.0, 1.0)


def test_load_image_reads_ome_zarr_like_a_nifti(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 255, (4, 5, 6)).astype(np.uint8)
    _ome(tmp_path / "img.ome.zarr", data)
    image = load_image(tmp_path / "img.ome.zarr")
    assert tuple(image.shape) == (1, 6, 5, 4)  # (C, x, y, z)
    np.testing.assert_array_equal(image[0].numpy(), data.transpose(2, 1, 0).astype(np.float32))
    np.testing.assert_allclose(np.diag(image.affine.numpy())[:3], (0.25, 0.5, 2.0))
    np.testing.assert_allclose(image.affine.numpy()[:3, 3], (-3.0, 1.0, 10.0))
    assert inference_datalist(tmp_path) == [{"image": str(tmp_path / "img.ome.zarr")}]


def test_bigtiff_is_read_lazily_and_by_load_image(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 255, (7, 30, 20)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", data, bigtiff=True, tile=(16, 16), resolution=(2.0, 4.0))
    volume = open_volume(tmp_path / "stack.tif")
    assert volume.kind == "tiff"
    assert volume.spatial_shape == (7, 30, 20)
    assert volume.voxel_size[1:] == (0.25, 0.5)  # pixels per unit -> unit per pixel (y, x)
    np.testing.assert_array_equal(volume.channel_first[:, 2:5, 3:20, 1:9], data[None, 2:5, 3:20, 1:9])
    volume.close()
    assert tuple(load_image(tmp_path / "stack.tif").shape) == (1, 20, 30, 7)


def test_clear_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.zarr does not exist"):
        open_volume(tmp_path / "nothing.zarr")
    zarr.create_array(str(tmp_path / "five.zarr"), shape=(1, 2, 3, 4, 5), dtype="uint8")
    with pytest.raises(VolumeError, match=r"five\.zarr: a 5D zarr array"):
        open_volume(tmp_path / "five.zarr")
    zarr.create_array(str(tmp_path / "big.zarr"), shape=(64, 64, 64), dtype="uint8")
    with pytest.raises(VolumeError, match=r"big\.zarr: .*`medunet blockwise`"):
        load_image(tmp_path / "big.zarr", max_bytes=1000)
    (tmp_path / "out.zarr").mkdir()
    with pytest.raises(VolumeError, match=r"out\.zarr already exists"):
        create_volume(tmp_path / "out.zarr", (2, 2), np.uint8, (2, 2), ("y", "x"), (1, 1), (0, 0))


def test_export_tiff_streams_ome_zarr_into_a_tiled_ome_bigtiff(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 5, (20, 300, 520)).astype(np.uint8)
    create_volume(tmp_path / "seg.ome.zarr", labels.shape, np.uint8, (8, 128, 128), ("z", "y", "x"), (2.0, 0.5, 0.25),
                  (10.0, 1.0, -3.0), "micrometer")[:] = labels  # fmt: skip
    out = export_tiff(tmp_path / "seg.ome.zarr", tmp_path / "seg.ome.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome
        assert tif.is_bigtiff
        assert (tif.pages.first.tilelength, tif.pages.first.tilewidth) == (256, 256)  # partial tiles at the edges
        assert len(tif.pages) == 20
        np.testing.assert_array_equal(tif.asarray(), labels)
    volume = open_volume(out)  # the voxel size and unit come back from the OME-XML
    assert (volume.axes, volume.voxel_size, volume.unit) == (("z", "y", "x"), (2.0, 0.5, 0.25), "micrometer")
    # probabilities with a channel axis, float16 (which OME lacks) as float32; a plain 2D zarr without geometry
    probs = np.random.default_rng(1).random((2, 6, 70, 90)).astype(np.float16)
    create_volume(tmp_path / "p.ome.zarr", probs.shape, np.float16, (1, 4, 64, 64), ("c", "z", "y", "x"), (1.0,) * 3,
                  (0.0,) * 3, None)[:] = probs  # fmt: skip
    volume = open_volume(export_tiff(tmp_path / "p.ome.zarr", tmp_path / "p.tif"))
    assert (volume.axes, volume.array.dtype, volume.unit) == (("c", "z", "y", "x"), np.float32, None)
    np.testing.assert_array_equal(np.asarray(volume.array[:]), probs.astype(np.float32))
    plane = np.random.default_rng(2).integers(0, 3, (300, 400)).astype(np.uint8)
    zarr.create_array(str(tmp_path / "plane.zarr"), shape=plane.shape, chunks=(128, 128), dtype="uint8")[:] = plane
    np.testing.assert_array_equal(tifffile.imread(export_tiff(tmp_path / "plane.zarr", tmp_path / "plane.tif")), plane)


def test_export_tiff_never_overwrites_and_leaves_no_partial_file(tmp_path: Path) -> None:
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(40, 40), chunks=(16, 16), dtype="uint8")[:] = 7
    (tmp_path / "mine.tif").write_bytes(b"the user's file")
    with pytest.raises(VolumeError, match=r"mine\.tif already exists"):
        export_tiff(tmp_path / "a.zarr", tmp_path / "mine.tif")
    assert (tmp_path / "mine.tif").read_bytes() == b"the user's file"
    with pytest.raises(VolumeError, match="into the input"):
        export_tiff(tmp_path / "a.zarr", tmp_path / "a.zarr" / "out.tif")
    export_tiff(tmp_path / "a.zarr", tmp_path / "mine.tif", overwrite=True)
    assert tifffile.imread(tmp_path / "mine.tif").max() == 7
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
