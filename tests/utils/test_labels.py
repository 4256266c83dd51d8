import numpy as np

from medunet.utils.labels import label_components, remove_small


def test_components_use_face_connectivity() -> None:
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: two objects
    mask[3, 2:] = True
    labels = label_components(mask)
    assert labels.dtype == np.int32
    assert labels.max() == 3
    volume = np.zeros((3, 3, 3), bool)
    volume[0, 0, 0] = volume[1, 1, 1] = True
    assert label_components(volume).max() == 2


def test_remove_small_drops_and_renumbers() -> None:
    labels = np.array([[1, 1, 1, 0, 5], [0, 0, 0, 0, 0], [7, 7, 0, 0, 0]])
    out = remove_small(labels, 2)
    assert sorted(np.unique(out).tolist()) == [0, 1, 2]
    assert (out[0, :3] == 1).all()
    assert (out[2, :2] == 2).all()
    assert out[0, 4] == 0
    assert np.array_equal(remove_small(labels, 0), np.array([[1, 1, 1, 0, 2], [0] * 5, [3, 3, 0, 0, 0]]))
