"""Metrics, calibration and the decision threshold (numpy / scikit-learn, no TensorFlow)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

THRESHOLD_RULE = (
    "p(pneumonia) >= threshold means pneumonia. The threshold maximises Youden's J "
    "(sensitivity + specificity - 1) on the val split among thresholds whose val sensitivity "
    "is at least {min_sensitivity} (screening: a missed pneumonia costs more than a false alarm). "
    "It is placed midway between the two neighbouring val scores, so it does not sit on one."
)


def predict_positive(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (scores >= threshold).astype(np.int32)


def choose_threshold(labels: np.ndarray, scores: np.ndarray, min_sensitivity: float) -> float:
    """The Youden-optimal threshold among those keeping sensitivity >= min_sensitivity."""
    if not 0.0 <= min_sensitivity <= 1.0:
        raise ValueError(f"min_sensitivity must be within [0, 1], not {min_sensitivity}")
    # Candidates are the distinct scores, highest first; roc_curve's leading +inf (nothing
    # predicted positive) is dropped.
    false_positive_rate, true_positive_rate, thresholds = (
        values[1:] for values in roc_curve(labels, scores, drop_intermediate=False)
    )
    youden = true_positive_rate - false_positive_rate
    # Never empty: the lowest candidate calls every image positive (sensitivity 1).
    eligible = true_positive_rate >= min_sensitivity
    # argmax takes the first maximum: among ties, the highest (most specific) threshold.
    best = int(np.argmax(np.where(eligible, youden, -np.inf)))
    return _midpoint_below(thresholds, best)


def sensitivity_threshold(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float) -> float:
    """The highest (most specific) threshold whose sensitivity reaches the target."""
    _, true_positive_rate, thresholds = (values[1:] for values in roc_curve(labels, scores, drop_intermediate=False))
    # the rate only grows as the threshold falls; the lowest threshold has sensitivity 1
    return _midpoint_below(thresholds, int(np.argmax(true_positive_rate >= target_sensitivity)))


def _midpoint_below(thresholds: np.ndarray, index: int) -> float:
    """Halfway between a (descending) candidate and the next lower score: same split of the scores."""
    upper = float(thresholds[index])
    lower = float(thresholds[index + 1]) if index + 1 < len(thresholds) else 0.0
    return float(np.clip((upper + lower) / 2.0, 0.0, 1.0))


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    labels = np.asarray(labels).reshape(-1)
    predicted = predict_positive(np.asarray(scores).reshape(-1), threshold)
    true_positive = int(np.sum((predicted == 1) & (labels == 1)))
    true_negative = int(np.sum((predicted == 0) & (labels == 0)))
    false_positive = int(np.sum((predicted == 1) & (labels == 0)))
    false_negative = int(np.sum((predicted == 0) & (labels == 1)))
    sensitivity = _ratio(true_positive, true_positive + false_negative)
    precision = _ratio(true_positive, true_positive + false_positive)
    return {
        "accuracy": _ratio(true_positive + true_negative, len(labels)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "sensitivity": sensitivity,
        "specificity": _ratio(true_negative, true_negative + false_positive),
        "precision": precision,
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity),
        "n": len(labels),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


# --- the full evaluation (report.json) ----------------------------------------------------


def predicted_labels(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Binary models with a threshold: p(positive) >= threshold; otherwise the arg-max class."""
    if threshold is None:
        return np.argmax(probabilities, axis=1).astype(np.int32)
    return predict_positive(probabilities[:, 1], threshold)


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> list[dict]:
    """Top-label confidence vs accuracy in equal-width confidence bins (the reliability diagram)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int(np.sum(index == b)),
            "confidence": float(confidence[index == b].mean()) if np.any(index == b) else 0.0,
            "accuracy": float(correct[index == b].mean()) if np.any(index == b) else 0.0,
        }
        for b in range(bins)
    ]


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Count-weighted mean |accuracy - confidence| over the reliability bins (top-label ECE)."""
    table = reliability_bins(labels, probabilities, bins)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table) / len(labels))


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Arg-max metrics; ROC AUC is the macro one-vs-rest mean over the classes present."""
    predicted = predicted_labels(probabilities, None)
    present = [label for label in range(probabilities.shape[1]) if 0 < np.sum(labels == label) < len(labels)]
    aucs = [roc_auc_score(labels == label, probabilities[:, label]) for label in present]
    metrics = {"accuracy": float(np.mean(predicted == labels))}
    if aucs:  # not defined when the split holds a single class
        metrics["roc_auc"] = float(np.mean(aucs))
    return metrics | {
        "macro_precision": float(precision_score(labels, predicted, average="macro", zero_division=0)),
        "macro_recall": float(recall_score(labels, predicted, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "n": len(labels),
    }


def evaluate_predictions(
    labels: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...], threshold: float | None
) -> dict:
    """Everything the report shows about one model on one split."""
    labels = np.asarray(labels).reshape(-1)
    predicted = predicted_labels(probabilities, threshold)
    classes = list(range(len(class_names)))
    if threshold is None:
        metrics = multiclass_metrics(labels, probabilities)
    else:
        metrics = binary_metrics(labels, probabilities[:, 1], threshold)
        metrics["pr_auc"] = float(average_precision_score(labels, probabilities[:, 1]))
    metrics["ece"] = expected_calibration_error(labels, probabilities)
    result = {
        "metrics": metrics,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "per_class": classification_report(
            labels, predicted, labels=classes, target_names=list(class_names), output_dict=True, zero_division=0
        ),
        "reliability": reliability_bins(labels, probabilities),
    }
    if threshold is not None:
        false_positive_rate, true_positive_rate, _ = roc_curve(labels, probabilities[:, 1])
        result["roc_curve"] = {"fpr": false_positive_rate.tolist(), "tpr": true_positive_rate.tolist()}
    return result


def operating_point(
    val_labels: np.ndarray,
    val_scores: np.ndarray,
    test_labels: np.ndarray,
    test_scores: np.ndarray,
    target_sensitivity: float,
    shipped_threshold: float,
) -> dict[str, float]:
    """The threshold at which val reaches a target sensitivity, and the specificity it costs on
    test against the shipped threshold."""
    threshold = sensitivity_threshold(val_labels, val_scores, target_sensitivity)
    at_target = binary_metrics(test_labels, test_scores, threshold)
    shipped = binary_metrics(test_labels, test_scores, shipped_threshold)
    return {
        "target_sensitivity": target_sensitivity,
        "threshold": threshold,
        "test_sensitivity": at_target["sensitivity"],
        "test_specificity": at_target["specificity"],
        "specificity_cost": shipped["specificity"] - at_target["specificity"],
    }
