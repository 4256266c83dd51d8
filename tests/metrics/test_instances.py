import numpy as np
import pytest

from medunet.metrics import AP_THRESHOLDS, instance_scores, iou_matrix, match_count


def squares(*boxes: tuple[int, int, int, int], shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    out = np.zeros(shape, np.int32)
    for label, (r0, r1, c0, c1) in enumerate(boxes, start=1):
        out[r0:r1, c0:c1] = label
    return out


def test_perfect_prediction_scores_one_under_any_numbering() -> None:
    truth = squares((0, 10, 0, 10), (20, 30, 20, 30))
    pred = np.where(truth == 1, 9, np.where(truth == 2, 4, 0))  # other label values
    s = instance_scores(pred, truth)
    assert s["ap_mean"] == s["f1"] == s["pq"] == s["precision"] == s["recall"] == 1.0
    assert s["merged"] == s["split"] == 0
    assert s["n_pred"] == s["n_true"] == 2


def test_average_precision_at_a_hand_computed_iou() -> None:
    truth = squares((0, 10, 0, 10))
    pred = squares((0, 10, 0, 8))  # 80 of 100 pixels: IoU 0.8
    s = instance_scores(pred, truth)
    assert s["ap@0.80"] == 1.0
    assert s["ap@0.85"] == 0.0
    # AP(t) = 1 for t <= 0.8 (7 of the 9 thresholds 0.5..0.9), 0 / (1 + 1) otherwise
    assert s["ap_mean"] == pytest.approx(7 / 9)
    assert s["pq"] == pytest.approx(0.8)
    _, iou = iou_matrix(pred, truth)
    assert iou[1, 1] == pytest.approx(0.8)
    assert AP_THRESHOLDS[0] == 0.5
    assert AP_THRESHOLDS[-1] == 0.9


def test_false_positives_and_negatives() -> None:
    truth = squares((0, 10, 0, 10), (20, 30, 20, 30))
    pred = squares((0, 10, 0, 10), (0, 5, 30, 35), (35, 38, 35, 38))  # 1 TP, 2 FP, 1 FN
    s = instance_scores(pred, truth)
    assert s["ap@0.50"] == pytest.approx(1 / 4)
    assert s["f1"] == pytest.approx(2 / 5)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 2)
    assert s["pq"] == pytest.approx(1 / (1 + 1 + 0.5))


def test_merged_and_split_objects_are_counted() -> None:
    truth = squares((0, 10, 0, 10), (0, 10, 10, 20), (20, 30, 0, 20))
    pred = np.zeros_like(truth)
    pred[0:10, 0:20] = 1  # one object over the first two true objects: both merged
    pred[20:30, 0:10], pred[20:30, 10:20] = 2, 3  # the third true object in two halves: split
    s = instance_scores(pred, truth)
    assert s["merged"] == 2
    assert s["split"] == 1
    # IoU is exactly 0.5 for the merged object with each of its true objects and for each half with the third
    # true object; at IoU >= 0.5 one of each is matched: 2 TP, 1 FP, 1 FN
    assert s["ap@0.50"] == pytest.approx(2 / (3 + 3 - 2))
    assert s["ap@0.55"] == 0.0
    _, iou = iou_matrix(pred, truth)
    assert iou[1, 1] == pytest.approx(0.5)


def test_matching_is_one_to_one_at_exactly_half() -> None:
    truth = squares((0, 10, 0, 20))
    pred = squares((0, 10, 0, 10), (0, 10, 10, 20))  # both halves have IoU 0.5 with the one true object
    tp, total = match_count(iou_matrix(pred, truth)[1][1:, 1:], 0.5)
    assert tp == 1
    assert total == pytest.approx(0.5)


def test_empty_images() -> None:
    empty = np.zeros((5, 5), np.int32)
    assert instance_scores(empty, empty)["f1"] == 1.0
    s = instance_scores(empty, squares((0, 2, 0, 2), shape=(5, 5)))
    assert s["f1"] == 0.0
    assert s["recall"] == 0.0
    assert s["ap_mean"] == 0.0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="shape"):
        instance_scores(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="prediction must hold integer"):
        instance_scores(np.full((4, 4), 0.5), np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="truth holds negative"):
        instance_scores(np.zeros((4, 4), np.int32), np.full((4, 4), -1))
