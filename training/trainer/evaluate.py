"""Binary metrics and the decision threshold (numpy / scikit-learn, no TensorFlow)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

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
