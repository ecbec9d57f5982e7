import numpy as np
import pytest
from training_support import binary_card, card_for

from cxr_model.card import Decision
from trainer.metrics import (
    binary_metrics,
    choose_threshold,
    evaluate_split,
    expected_calibration_error,
    operating_point,
    predict_positive,
    reliability_bins,
)


def brute_force_youden(labels, scores, threshold_candidates, min_sensitivity):
    """Best J over explicit thresholds, as (J, sensitivity), for cross-checking choose_threshold."""
    best = (-np.inf, 0.0)
    for threshold in threshold_candidates:
        metrics = binary_metrics(labels, scores, threshold)
        if metrics.sensitivity >= min_sensitivity:
            youden = metrics.sensitivity + metrics.specificity - 1
            best = max(best, (youden, metrics.sensitivity))
    return best


def test_binary_metrics_match_a_hand_counted_confusion_matrix():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.6, 0.2, 0.1, 0.3, 0.7, 0.4, 0.05, 0.55])
    # threshold 0.5 -> TP 4 (0.9, 0.8, 0.6, 0.55), FN 1 (0.2), FP 1 (0.7), TN 4
    metrics = binary_metrics(labels, scores, 0.5)
    assert metrics.n == 10
    assert metrics.accuracy == pytest.approx(0.8)
    assert metrics.sensitivity == pytest.approx(0.8)
    assert metrics.specificity == pytest.approx(0.8)
    assert metrics.precision == pytest.approx(0.8)
    assert metrics.f1 == pytest.approx(0.8)
    # 25 positive/negative pairs; misordered: 0.2 < 0.3, 0.4, 0.7 and 0.6, 0.55 < 0.7
    assert metrics.roc_auc == pytest.approx(20 / 25)
    assert set(metrics.for_card()) == {"accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1", "n"}


def test_the_served_decision_gives_the_threshold_metrics():
    """evaluate_split decides by cxr_model.answer.decide: p(positive) >= threshold, like the threshold search."""
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.6, 0.2, 0.1, 0.3, 0.7, 0.4, 0.05, 0.5])
    probabilities = np.stack([1 - scores, scores], axis=1)
    split = evaluate_split(binary_card(0.5), labels, probabilities)
    assert split.metrics == binary_metrics(labels, scores, 0.5)
    assert split.confusion_matrix == [[4, 1], [1, 4]]
    assert split.roc_curve is not None and split.pr_auc is not None


def test_threshold_is_inclusive():
    np.testing.assert_array_equal(predict_positive(np.array([0.49, 0.5, 0.51]), 0.5), [0, 1, 1])


def test_no_positive_prediction_gives_zero_precision_not_an_error():
    metrics = binary_metrics(np.array([0, 1]), np.array([0.1, 0.2]), 0.9)
    assert metrics.precision == 0.0 and metrics.sensitivity == 0.0 and metrics.f1 == 0.0
    assert metrics.specificity == 1.0


def test_separable_scores_get_a_threshold_between_the_classes():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    threshold = choose_threshold(labels, scores, min_sensitivity=0.9)
    assert threshold == pytest.approx(0.5)  # midway between 0.3 and 0.7
    assert binary_metrics(labels, scores, threshold).accuracy == 1.0


def test_threshold_is_youden_optimal_without_a_sensitivity_floor():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], [150, 350])
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1)
    threshold = choose_threshold(labels, scores, min_sensitivity=0.0)
    metrics = binary_metrics(labels, scores, threshold)
    best_youden, _ = brute_force_youden(labels, scores, np.unique(scores), 0.0)
    assert metrics.sensitivity + metrics.specificity - 1 == pytest.approx(best_youden)
    assert threshold not in set(scores)


def test_sensitivity_floor_moves_the_threshold_down():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1], [200, 200])
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.12), 0, 1)
    free = choose_threshold(labels, scores, min_sensitivity=0.0)
    floored = choose_threshold(labels, scores, min_sensitivity=0.97)
    assert binary_metrics(labels, scores, free).sensitivity < 0.97  # the floor binds in this example
    assert floored < free
    metrics = binary_metrics(labels, scores, floored)
    assert metrics.sensitivity >= 0.97
    best_youden, _ = brute_force_youden(labels, scores, np.unique(scores), 0.97)
    assert metrics.sensitivity + metrics.specificity - 1 == pytest.approx(best_youden)


def test_full_sensitivity_floor_keeps_every_positive():
    labels = np.array([0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.2, 0.1, 0.8, 0.05])
    threshold = choose_threshold(labels, scores, min_sensitivity=1.0)
    assert binary_metrics(labels, scores, threshold).sensitivity == 1.0
    assert 0.1 < threshold < 0.2  # the most specific threshold that still catches the 0.2 positive


def test_sensitivity_floor_outside_0_1_is_rejected():
    with pytest.raises(ValueError):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), min_sensitivity=1.5)


def test_ece_of_a_hand_made_reliability_table():
    # four images at confidence 0.9 (3 right) and four at 0.6 (2 right)
    probabilities = np.array([[0.1, 0.9]] * 4 + [[0.6, 0.4]] * 4)
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 1])
    bins = [row for row in reliability_bins(labels, probabilities, bins=10) if row.count]
    assert [(row.count, row.accuracy) for row in bins] == [(4, 0.5), (4, 0.75)]
    assert [row.confidence for row in bins] == pytest.approx([0.6, 0.9])
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx((4 * 0.1 + 4 * 0.15) / 8)


def test_perfectly_confident_and_right_is_perfectly_calibrated():
    assert expected_calibration_error(np.array([0, 1, 2]), np.eye(3)) == 0.0


def test_multiclass_evaluation_uses_argmax_and_skips_absent_classes_in_auc():
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 0, 1])  # class 2 absent from this split
    result = evaluate_split(card_for(("normal", "bacteria", "virus")), labels, probabilities)
    assert result.confusion_matrix == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert result.metrics.accuracy == 0.5
    assert result.metrics.roc_auc == pytest.approx(np.mean([0.75, 0.75]))
    assert result.metrics.recall == {"normal": 0.5, "bacteria": 0.5, "virus": 0.0}
    assert result.metrics.for_card()["recall_bacteria"] == 0.5
    assert {"macro_f1", "macro_precision", "macro_recall", "n"} <= set(result.metrics.for_card())
    assert result.per_class["virus"].support == 0
    assert result.roc_curve is None and result.pr_auc is None


def test_a_binary_card_without_threshold_decides_by_arg_max():
    probabilities = np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    result = evaluate_split(card_for(("a", "b"), Decision()), np.array([0, 1, 1]), probabilities)
    assert result.confusion_matrix == [[1, 0], [1, 1]]
    assert result.metrics.kind == "binary" and result.metrics.sensitivity == 0.5


def test_operating_point_reports_the_specificity_a_higher_sensitivity_costs():
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [200, 300])
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1)
    shipped = choose_threshold(labels, scores, 0.90)
    point = operating_point(labels, scores, labels, scores, 0.97, shipped)
    assert point.test_sensitivity >= 0.97 and point.threshold < shipped
    shipped_specificity = binary_metrics(labels, scores, shipped).specificity
    assert point.specificity_cost == pytest.approx(shipped_specificity - point.test_specificity)
    assert point.specificity_cost > 0
