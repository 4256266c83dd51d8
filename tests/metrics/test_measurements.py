"""Per-segment measurements of one prediction: counts, physical volume, intensities, bounding box."""

from __future__ import annotations

import numpy as np
import pytest

from medunet.metrics import segment_measurements


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
