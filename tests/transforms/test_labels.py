"""Label rules: data-set label conventions to class indices, with clear errors on unexpected values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medunet.transforms import LabelToClassesd, ToGrayscaled, label_to_classes


def test_label_rules_and_unexpected_values() -> None:
    assert label_to_classes(np.array([[0, 255], [255, 0]]), "threshold").tolist() == [[0, 1], [1, 0]]
    inst = np.array([[1, 1, 2, 2]])
    assert label_to_classes(inst, "instances").tolist() == [[1, 1, 0, 1]]  # touching border carved
    with pytest.raises(ValueError, match=r"label values \[255\] are outside the classes 0..1"):
        label_to_classes(np.array([[0, 255]]), "classes")
    with pytest.raises(ValueError, match="non-integer or NaN"):
        label_to_classes(np.array([[0.0, np.nan]]), "classes")
    with pytest.raises(ValueError, match="label_rule='otsu' is not supported; valid options are 'classes'"):
        label_to_classes(np.zeros((2, 2)), "otsu")


def test_dictionary_form_keeps_instances_and_names_the_source() -> None:
    data = {"label": torch.tensor([[[1, 1, 2, 2]]])}
    out = LabelToClassesd("label", rule="instances", instances_key="instances")(data)
    assert out["label"].tolist() == [[[1, 1, 0, 1]]]
    assert out["instances"].tolist() == [[[1, 1, 2, 2]]]
    with pytest.raises(ValueError, match=r"^label: label values \[7\]"):
        LabelToClassesd("label", rule="classes")({"label": np.array([[0, 7]])})


def test_grayscale_from_rgb_and_wrong_channel_counts() -> None:
    rgb = torch.zeros(3, 2, 2)
    rgb[1] = 1.0
    gray = ToGrayscaled("image")({"image": rgb})["image"]
    assert gray.shape == (1, 2, 2)
    assert float(gray.max()) == pytest.approx(0.587)
    with pytest.raises(ValueError, match="'image' has 2 channels"):
        ToGrayscaled("image")({"image": torch.zeros(2, 2, 2)})


def test_add_channel_only_where_the_image_has_none() -> None:
    from medunet.transforms import AddChanneld

    add = AddChanneld("image", spatial_dims=3)
    assert add({"image": torch.zeros(5, 6, 7)})["image"].shape == (1, 5, 6, 7)  # MONAI Deploy's (x, y, z)
    assert add({"image": torch.zeros(1, 5, 6, 7)})["image"].shape == (1, 5, 6, 7)  # medunet's loader's
    with pytest.raises(ValueError, match=r"'image' has shape \(5, 6\); a 3D network takes 3 spatial axes"):
        add({"image": torch.zeros(5, 6)})
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        AddChanneld("image", spatial_dims=4)


def test_instance_borders_make_three_classes() -> None:
    instances = np.zeros((8, 12), np.int64)
    instances[1:7, 1:6] = 1
    instances[1:7, 6:11] = 2  # touching the first
    classes = label_to_classes(instances, "instance_borders", num_classes=3)
    assert set(np.unique(classes)) == {0, 1, 2}
    assert (classes[instances == 0] == 0).all()
    assert (classes[:, 5:7][instances[:, 5:7] > 0] == 2).all()  # where the two touch: border on both sides
    assert (classes[2:6, 2:5] == 1).all()
    with pytest.raises(ValueError, match="set num_classes to 3, not 2"):
        label_to_classes(instances, "instance_borders", num_classes=2)
