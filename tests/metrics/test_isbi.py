import numpy as np
import pytest

from medunet.metrics import ISBI_THRESHOLDS, isbi_scores, thin_borders, vrand_vinfo


def test_thin_borders_fills_the_border_inside_the_mask() -> None:
    segments = np.array([[1, 1, 0, 2, 2]])
    out = thin_borders(segments, np.ones_like(segments, bool))
    assert (out > 0).all()
    assert out[0, 2] == 2
    assert (thin_borders(np.zeros((3, 3), int), np.ones((3, 3), bool)) == 1).all()


def test_vrand_vinfo_hand_computed() -> None:
    truth = np.array([[1, 1, 2, 2]])
    assert vrand_vinfo(truth, truth) == (1.0, 1.0)
    merged = np.ones_like(truth)
    # p = (1/2, 1/2) in one proposal segment: sum p^2 = 1/2, sum s^2 = 1, sum t^2 = 1/2 -> 0.5 / 0.75
    vrand, vinfo = vrand_vinfo(merged, truth)
    assert vrand == pytest.approx(2 / 3)
    assert vinfo == pytest.approx(0.0)
    # splitting one true segment into two halves is the mirror image
    vrand, vinfo = vrand_vinfo(np.array([[1, 2]]), np.array([[1, 1]]))
    assert vrand == pytest.approx(2 / 3)
    assert vinfo == pytest.approx(0.0)
    # only the truth's foreground counts: proposal labels on truth background are ignored
    assert vrand_vinfo(np.array([[1, 1, 2, 2, 7]]), np.array([[1, 1, 2, 2, 0]])) == (1.0, 1.0)


def test_isbi_scores_pick_the_best_threshold() -> None:
    truth = np.ones((10, 21), bool)
    truth[:, 10] = False  # a membrane between two cells
    probability = np.where(truth, 0.8, 0.0)
    probability[4:6, 10] = 0.35  # a weak gap: above 0.3 the cells merge through it
    s = isbi_scores(probability, truth)
    assert s["vrand_thinned"] == pytest.approx(1.0)
    assert s["vrand_threshold"] == pytest.approx(0.4)
    assert s["vinfo_thinned"] == pytest.approx(1.0)
    assert s["pixel_error"] == pytest.approx(0.0)
    assert s["pixel_error_threshold"] >= 0.4
    merged = isbi_scores(probability, truth, thresholds=[0.3])
    assert merged["vrand_thinned"] == pytest.approx(2 / 3)
    # pixel error: 2 false-positive pixels at threshold 0.3: F = 2*200 / (202 + 200)
    assert merged["pixel_error"] == pytest.approx(1 - 400 / 402)
    assert ISBI_THRESHOLDS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="shape"):
        isbi_scores(np.zeros((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        isbi_scores(np.full((4, 4), 2.0), np.ones((4, 4)))
    with pytest.raises(ValueError, match="no foreground"):
        vrand_vinfo(np.ones((2, 2), int), np.zeros((2, 2), int))
