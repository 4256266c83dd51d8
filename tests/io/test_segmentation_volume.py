"""The OME-Zarr layout of a segmentation: image, NGFF label image and job record, written in one call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from medunet.io.segmentation_volume import (
    INSTANCES,
    STATE,
    add_label_image,
    create_segmentation_volume,
    stored_job,
)
from medunet.io.volumes import VolumeError, create_volume, open_volume


@pytest.fixture
def source(tmp_path: Path):
    create_volume(tmp_path / "in.zarr", (10, 20, 30), np.uint8, (5, 10, 10), ("z", "y", "x"), (2.0, 0.5, 0.5),
                  (1.0, 2.0, 3.0), "micrometer")  # fmt: skip
    return open_volume(tmp_path / "in.zarr")


def test_one_call_writes_image_label_image_and_record(source, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    create_segmentation_volume(out, source, (10, 20, 30), np.uint8, (5, 10, 10), None, {"input": "x"}, instances=True)
    image, labels = open_volume(out), open_volume(out / INSTANCES)
    for volume in (image, labels):
        assert volume.spatial_shape == (10, 20, 30)
        assert (volume.voxel_size, volume.origin, volume.unit) == (source.voxel_size, source.origin, "micrometer")
    assert labels.array.dtype == np.uint32
    assert dict(zarr.open_group(str(out / "labels")).attrs)["ome"]["labels"] == ["instances"]
    assert dict(zarr.open_group(str(out / INSTANCES)).attrs)["ome"]["image-label"]["source"] == {"image": "../../"}
    assert (out / STATE).is_dir()
    assert stored_job(out) == {"input": "x"}
    assert add_label_image(out, (5, 10, 10)).shape == (10, 20, 30)  # present: opened, not replaced


def test_scores_have_a_channel_axis_and_no_label_image(source, tmp_path: Path) -> None:
    out = tmp_path / "scores.zarr"
    create_segmentation_volume(out, source, (10, 20, 30), np.float32, (5, 10, 10), 3, {})
    assert open_volume(out).axes == ("c", "z", "y", "x")
    assert open_volume(out).array.chunks == (3, 5, 10, 10)
    assert not (out / "labels").exists()


def test_the_source_and_existing_outputs_are_protected(source, tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="into the input"):
        create_segmentation_volume(source.path / "out.zarr", source, (10, 20, 30), np.uint8, (5, 10, 10), None, {})
    (tmp_path / "mine").mkdir()
    with pytest.raises(VolumeError, match="already exists"):
        create_segmentation_volume(tmp_path / "mine", source, (10, 20, 30), np.uint8, (5, 10, 10), None, {})
    assert stored_job(tmp_path / "mine") is None
    assert stored_job(tmp_path / "nothing") is None
