import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medunet.transforms import LabelToInstancesd, PredictionToInstances, PredictionToInstancesd, label_to_instances
from medunet.transforms.functional.instances import foreground_probability, instances_from_prediction


def two_touching_discs(dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A mask of two discs (balls) that overlap in a narrow neck, and a probability that dips at the neck."""
    size = 40
    grid = np.indices((size,) * dims, dtype=np.float32)
    centre_a = np.array([20] * dims, np.float32)
    centre_b = centre_a.copy()
    centre_b[-1] += 17
    centre_a[-1] -= 0
    da = np.sqrt(sum((grid[i] - centre_a[i]) ** 2 for i in range(dims)))
    db = np.sqrt(sum((grid[i] - centre_b[i]) ** 2 for i in range(dims)))
    mask = (da <= 9) | (db <= 9)
    # above 0.5 on the objects, highest at the centres, lowest at the neck between them
    probability = (0.5 + 0.5 * np.clip(np.maximum(1 - da / 12, 1 - db / 12), 0, 1)) * mask + 0.02 * ~mask
    return mask, probability.astype(np.float32)


def probabilities(probability: np.ndarray) -> np.ndarray:
    return np.stack([1 - probability, probability])


@pytest.mark.parametrize("dims", [2, 3])
def test_split_separates_touching_objects(dims: int) -> None:
    mask, probability = two_touching_discs(dims)
    classes = mask[None].astype(np.int64)
    assert instances_from_prediction(classes).max() == 1  # components merge them
    by_distance = instances_from_prediction(classes, split="distance")
    by_probability = instances_from_prediction(probabilities(probability), split="probability", seed_threshold=0.8)
    for labels in (by_distance, by_probability):
        assert labels.max() == 2
        assert np.array_equal(labels > 0, mask)  # splitting keeps every object voxel
        # each disc centre in its own object
        centre = (20,) * dims
        other = (*centre[:-1], 37)
        assert labels[centre] != labels[other]


def test_unseeded_component_keeps_a_label_and_min_size_drops_specks() -> None:
    mask, probability = two_touching_discs()
    mask = mask.copy()
    mask[0:2, 0:2] = True  # a 4-pixel speck far from both discs: probability below the seed threshold
    probability = probability.copy()
    probability[0:2, 0:2] = 0.55
    labels = instances_from_prediction(probabilities(probability), split="probability", seed_threshold=0.8)
    assert labels.max() == 3
    assert labels[0, 0] > 0
    assert (
        instances_from_prediction(probabilities(probability), split="probability", seed_threshold=0.8, min_size=5).max()
        == 2
    )


def test_class_indices_and_probabilities_agree_without_split() -> None:
    mask, probability = two_touching_discs()
    probs = probabilities(probability)
    assert np.array_equal(instances_from_prediction(probs), instances_from_prediction(mask[None].astype(np.int64)))
    fg, p = foreground_probability(probs)
    assert np.array_equal(fg, mask)
    assert p is not None


def test_bad_arguments_are_named() -> None:
    mask, _ = two_touching_discs()
    with pytest.raises(ValueError, match="needs class probabilities"):
        instances_from_prediction(mask[None].astype(np.int64), split="probability")
    with pytest.raises(ValueError, match=r"split='watershed'.*'distance'"):
        instances_from_prediction(mask[None].astype(np.int64), split="watershed")
    with pytest.raises(ValueError, match="channel-first"):
        instances_from_prediction(mask.astype(np.int64))
    with pytest.raises(ValueError, match="foreground class 3"):
        instances_from_prediction(np.zeros((2, 4, 4)), foreground=3)
    with pytest.raises(ValueError, match="min_size"):
        instances_from_prediction(mask[None].astype(np.int64), min_size=-1)


def test_array_and_dictionary_forms_keep_metadata() -> None:
    _mask, probability = two_touching_discs()
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    pred = MetaTensor(torch.as_tensor(probabilities(probability)), affine=affine, meta={"filename_or_obj": "a.png"})
    out = PredictionToInstances(split="probability", seed_threshold=0.8)(pred)
    assert isinstance(out, MetaTensor)
    assert out.shape == (1, 40, 40)
    assert out.dtype == torch.int32
    assert out.meta["filename_or_obj"] == "a.png"
    assert torch.equal(out.affine, affine)
    d = PredictionToInstancesd(keys="pred", split="distance")({"pred": pred})
    assert d["pred"] is pred
    assert int(d["pred_instances"].max()) == 2
    assert isinstance(PredictionToInstances()(probabilities(probability)), np.ndarray)


def test_label_to_instances_follows_the_label_rule() -> None:
    mask, _ = two_touching_discs()
    raw = np.where(mask, 255, 0)
    raw[:, 25:27] = 0  # a membrane between the discs
    assert label_to_instances(raw, "threshold").max() == 2
    assert label_to_instances((raw > 0).astype(np.int64), "classes").max() == 2
    instances = np.array([[0, 3, 3], [4, 4, 0]])
    assert np.array_equal(label_to_instances(instances, "instances"), instances)
    d = LabelToInstancesd(keys="instances", rule="threshold")({"instances": torch.as_tensor(raw[None])})
    assert d["instances"].shape == (1, 40, 40)
    assert int(d["instances"].max()) == 2
    with pytest.raises(ValueError, match="channel-first"):
        LabelToInstancesd(keys="instances")({"instances": torch.zeros(2, 4, 4)})
    with pytest.raises(ValueError, match=">= 0"):
        label_to_instances(np.array([[-1, 0]]), "instances")


def test_fill_partitions_the_image_along_the_probability() -> None:
    """EM-like: two cells separated by a membrane with a one-pixel gap; filling gives two cells covering the
    whole image, split where the probability is lowest."""
    probability = np.full((20, 31), 0.95, np.float32)
    probability[:, 15] = 0.1  # the membrane
    probability[9, 15] = 0.6  # a gap: the object class leaks through it
    probability[:, 14] = probability[:, 16] = 0.7
    probs = probabilities(probability)
    assert instances_from_prediction(probs).max() == 1  # components merge the cells through the gap
    labels = instances_from_prediction(probs, split="probability", seed_threshold=0.8, fill=True)
    assert labels.min() == 1
    assert labels.max() == 2
    assert (labels[:, :15] == labels[0, 0]).all()
    assert (labels[:, 16:] == labels[0, 30]).all()
    classes = (probability > 0.5)[None].astype(np.int64)
    assert instances_from_prediction(classes, min_size=5, fill=True).min() == 1
    assert instances_from_prediction(np.zeros((1, 5, 5), np.int64), fill=True).max() == 0
    with pytest.raises(ValueError, match="needs class probabilities"):
        instances_from_prediction(classes, split="probability", fill=True)


def test_borders_split_recovers_touching_instances() -> None:
    from medunet.transforms.labels import instance_borders

    truth = np.zeros((20, 30), np.int64)
    truth[2:12, 2:12], truth[2:12, 12:22], truth[14:17, 25:28] = 1, 2, 3  # two touching, one tiny
    classes = instance_borders(truth)
    from_indices = instances_from_prediction(classes[None], split="borders")
    probabilities = np.stack([classes == c for c in range(3)]).astype(np.float32)
    from_probabilities = instances_from_prediction(probabilities, split="borders")
    for labels in (from_indices, from_probabilities):
        assert len(np.unique(labels)) == 4
        for value in (1, 2, 3):  # each true object is exactly one predicted object
            assert len(np.unique(labels[truth == value])) == 1
            assert (labels == labels[truth == value][0]).sum() == (truth == value).sum()
    assert len(np.unique(instances_from_prediction(classes[None], split="borders", min_size=10))) == 3
    with pytest.raises(ValueError, match=r"split='borders' needs a \(3, \*S\) prediction"):
        instances_from_prediction(np.zeros((2, 8, 8), np.float32), split="borders")
    with pytest.raises(ValueError, match="has no fill=True form"):
        instances_from_prediction(classes[None], split="borders", fill=True)


def test_borders_seeds_need_a_margin_over_the_border_and_a_size() -> None:
    """Two nuclei whose cores touch through a faint bridge (interior 0.5, border 0.4): the argmax's interior
    (margin 0) is one seed and merges them, a margin of 0.3 keeps them apart. A core fragment of 3 pixels inside
    the second nucleus splits it unless seeds that small are dropped."""
    probs = np.zeros((3, 12, 24), np.float32)
    probs[0] = 1.0
    probs[:, 1:11, 1:23] = np.array([0.0, 0.2, 0.8])[:, None, None]  # two nuclei's borders ...
    probs[:, 3:9, 3:11] = np.array([0.0, 0.9, 0.1])[:, None, None]  # ... and their cores
    probs[:, 3:9, 13:21] = np.array([0.0, 0.9, 0.1])[:, None, None]
    probs[:, 5:7, 11:13] = np.array([0.1, 0.5, 0.4])[:, None, None]  # the faint bridge between the cores
    assert instances_from_prediction(probs, split="borders", seed_threshold=0.0).max() == 1
    separated = instances_from_prediction(probs, split="borders", seed_threshold=0.3)
    assert separated.max() == 2
    assert separated[6, 5] != separated[6, 18]
    fragment = probs.copy()
    fragment[:, 3:9, 16] = np.array([0.0, 0.2, 0.8])[:, None]  # a border line cuts the second core in two ...
    fragment[:, 3:9, 17:21] = np.array([0.0, 0.2, 0.8])[:, None, None]
    fragment[:, 5, 18:21] = np.array([0.0, 0.9, 0.1])[:, None]  # ... leaving a 3-pixel fragment
    assert instances_from_prediction(fragment, split="borders", seed_threshold=0.3).max() == 3
    assert instances_from_prediction(fragment, split="borders", seed_threshold=0.3, seed_min_size=4).max() == 2
    with pytest.raises(ValueError, match="seed_min_size must be >= 0"):
        instances_from_prediction(probs, split="borders", seed_min_size=-1)
    with pytest.raises(ValueError, match=r"margin over the border\) must be in \[0, 1\)"):
        instances_from_prediction(probs, split="borders", seed_threshold=1.0)
