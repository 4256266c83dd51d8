"""Per-segment measurements of one prediction: counts, physical volume, intensities, bounding box."""

from __future__ import annotations

import numpy as np
import pytest

from medunet.metrics import instance_measurements, segment_measurements


def test_volume_intensity_and_box_of_each_segment_in_physical_units() -> None:
    labels = np.zeros((10, 8, 6), np.uint8)
    labels[2:5, 1:3, 0:2] = 1  # 3 x 2 x 2 = 12 voxels
    labels[9, 7, 5] = 3
    intensities = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 0.0]
    first, third = segment_measurements(labels, affine, intensities, {1: "liver"})
    assert first["label"] == "liver"
    assert third["label"] == "segment 3"
    assert first["voxel_count"] == 12
    assert first["volume_ml"] == pytest.approx(12 * 12.0 / 1000)  # 2 x 2 x 3 mm voxels
    assert first["mean_intensity"] == pytest.approx(float(intensities[labels == 1].mean()))
    assert first["std_intensity"] == pytest.approx(float(intensities[labels == 1].std()))
    box = first["bounding_box"]
    assert (box["voxel_min"], box["voxel_max"]) == ([2, 1, 0], [4, 2, 1])
    assert box["world_min"] == pytest.approx([-6.0, 7.0, 0.0])
    assert box["world_max"] == pytest.approx([-2.0, 9.0, 3.0])
    assert first["voxel_size_mm"] == pytest.approx([2.0, 2.0, 3.0])


def test_2d_reports_area_and_shapes_are_checked() -> None:
    labels = np.zeros((5, 5), np.uint8)
    labels[:2, :2] = 1
    [record] = segment_measurements(labels, np.diag([0.5, 0.5, 1.0]))
    assert record["area_mm2"] == pytest.approx(4 * 0.25)
    assert "mean_intensity" not in record
    assert segment_measurements(np.zeros((4, 4)), np.eye(3)) == []
    with pytest.raises(ValueError, match=r"intensities of shape \(4, 4\) are not on the labels' grid \(5, 5\)"):
        segment_measurements(labels, np.eye(3), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="must be a 2D or 3D label image"):
        segment_measurements(np.zeros(5), np.eye(2))


def test_instances_are_measured_one_row_each() -> None:
    labels = np.zeros((10, 12), np.int32)
    labels[1:4, 2:6] = 3
    labels[6:9, 7:11] = 7
    image = np.arange(120, dtype=np.float64).reshape(10, 12)
    probability = np.where(labels == 3, 0.9, 0.6)
    first, second = instance_measurements(labels, (0.5, 0.25), "micrometer", image, probability)
    assert (first["label"], first["area_px"], second["label"]) == (3, 12, 7)
    assert first["area"] == pytest.approx(12 * 0.125)
    assert first["unit"] == "micrometer^2"
    assert first["centroid"] == [2.0, 3.5]
    assert (first["bbox_min"], first["bbox_max"]) == ([1, 2], [3, 5])  # inclusive
    assert first["mean_intensity"] == pytest.approx(float(image[labels == 3].mean()))
    assert (first["mean_probability"], second["mean_probability"]) == (pytest.approx(0.9), pytest.approx(0.6))
    [bare] = instance_measurements(labels == 7)
    assert (bare["area"], bare["unit"], bare["mean_intensity"], bare["mean_probability"]) == (None, None, None, None)
    assert instance_measurements(np.zeros((4, 4), int)) == []
    with pytest.raises(ValueError, match=r"an image of shape \(4, 4\) is not on the instances' grid \(10, 12\)"):
        instance_measurements(labels, intensities=np.zeros((4, 4)))
