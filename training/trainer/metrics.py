"""The metrics of one split (numpy / scikit-learn): typed values for the card and the report,
calibration error, and the binary models' threshold search."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    roc_curve,
)

from cxr_model.card import ModelCard
from trainer.decision import decided_label_ids

RELIABILITY_BINS = 15
BOOTSTRAP_RESAMPLES = 1000
Interval = tuple[float, float]


class ReliabilityBin(BaseModel):
    low: float
    high: float
    count: int
    confidence: float  # mean top-class probability in the bin
    accuracy: float


class RocCurve(BaseModel):
    fpr: list[float]
    tpr: list[float]


class ClassReport(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class BinaryMetrics(BaseModel):
    """Of the decided labels against the truth; the positive class is the second label."""

    kind: Literal["binary"] = "binary"
    accuracy: float
    roc_auc: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    n: int

    def summary(self) -> dict[str, float]:
        return self.model_dump(exclude={"kind", "n"})

    def for_card(self) -> dict[str, float]:
        return self.summary() | {"n": float(self.n)}


class MulticlassMetrics(BaseModel):
    """Of arg-max decisions; `roc_auc` is the macro one-vs-rest mean over the classes present."""

    kind: Literal["multiclass"] = "multiclass"
    accuracy: float
    roc_auc: float | None  # not defined when the split holds a single class
    macro_precision: float
    macro_recall: float
    macro_f1: float
    # Cohen's kappa with quadratic weights, the labels ordered as in the card: the agreement
    # measure of ordered grades (mild < moderate < severe); of little meaning for unordered labels
    quadratic_kappa: float | None = None  # None in reports written before it was measured
    recall: dict[str, float]  # per class
    n: int

    def summary(self) -> dict[str, float]:
        return self.model_dump(exclude={"kind", "n", "recall"}, exclude_none=True)

    def for_card(self) -> dict[str, float]:
        per_class = {f"recall_{label}": value for label, value in self.recall.items()}
        return self.summary() | per_class | {"n": float(self.n)}


Metrics = Annotated[BinaryMetrics | MulticlassMetrics, Field(discriminator="kind")]


class SplitEvaluation(BaseModel):
    """Everything the report shows about one model on one split."""

    metrics: Metrics
    ece: float
    pr_auc: float | None = None  # binary: average precision of the positive class
    confusion_matrix: list[list[int]]  # rows: true label, columns: decided label
    per_class: dict[str, ClassReport]
    reliability: list[ReliabilityBin]
    roc_curve: RocCurve | None = None  # binary


class OperatingPoint(BaseModel):
    """The threshold at which val reaches a target sensitivity, and what it costs on test."""

    target_sensitivity: float
    threshold: float
    test_sensitivity: float
    test_specificity: float
    specificity_cost: float  # against the shipped threshold


# --- the binary threshold -----------------------------------------------------------------


def choose_threshold(label_ids: np.ndarray, scores: np.ndarray, min_sensitivity: float) -> float:
    """The Youden-optimal threshold on p(positive) among those keeping sensitivity >= min_sensitivity."""
    if not 0.0 <= min_sensitivity <= 1.0:
        raise ValueError(f"min_sensitivity must be within [0, 1], not {min_sensitivity}")
    # Candidates are the distinct scores, highest first; roc_curve's leading +inf (nothing
    # predicted positive) is dropped.
    false_positive_rate, true_positive_rate, thresholds = (
        values[1:] for values in roc_curve(label_ids, scores, drop_intermediate=False)
    )
    youden = true_positive_rate - false_positive_rate
    # Never empty: the lowest candidate calls every image positive (sensitivity 1).
    eligible = true_positive_rate >= min_sensitivity
    # argmax takes the first maximum: among ties, the highest (most specific) threshold.
    best = int(np.argmax(np.where(eligible, youden, -np.inf)))
    return _midpoint_below(thresholds, best)


def sensitivity_threshold(label_ids: np.ndarray, scores: np.ndarray, target_sensitivity: float) -> float:
    """The highest (most specific) threshold whose sensitivity reaches the target."""
    _, true_positive_rate, thresholds = (values[1:] for values in roc_curve(label_ids, scores, drop_intermediate=False))
    # the rate only grows as the threshold falls; the lowest threshold has sensitivity 1
    return _midpoint_below(thresholds, int(np.argmax(true_positive_rate >= target_sensitivity)))


def _midpoint_below(thresholds: np.ndarray, index: int) -> float:
    """Halfway between a (descending) candidate and the next lower score: same split of the scores."""
    upper = float(thresholds[index])
    lower = float(thresholds[index + 1]) if index + 1 < len(thresholds) else 0.0
    return float(np.clip((upper + lower) / 2.0, 0.0, 1.0))


def predict_positive(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (scores >= threshold).astype(np.int32)


def binary_metrics(label_ids: np.ndarray, scores: np.ndarray, threshold: float) -> BinaryMetrics:
    """Metrics of p(positive) >= threshold (label id 1 is the positive class)."""
    scores = np.asarray(scores).reshape(-1)
    return binary_metrics_of(label_ids, predict_positive(scores, threshold), scores)


def binary_metrics_of(label_ids: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> BinaryMetrics:
    truth = np.asarray(label_ids).reshape(-1)
    true_positive = int(np.sum((predicted == 1) & (truth == 1)))
    true_negative = int(np.sum((predicted == 0) & (truth == 0)))
    false_positive = int(np.sum((predicted == 1) & (truth == 0)))
    false_negative = int(np.sum((predicted == 0) & (truth == 1)))
    sensitivity = _ratio(true_positive, true_positive + false_negative)
    precision = _ratio(true_positive, true_positive + false_positive)
    return BinaryMetrics(
        accuracy=_ratio(true_positive + true_negative, len(truth)),
        roc_auc=rank_auc(truth == 1, scores),
        sensitivity=sensitivity,
        specificity=_ratio(true_negative, true_negative + false_positive),
        precision=precision,
        f1=_ratio(2 * precision * sensitivity, precision + sensitivity),
        n=len(truth),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


# The bootstrap computes these figures a thousand times per split, so they are numpy over one
# confusion matrix and ranks: scikit-learn's own functions spend milliseconds per call validating.


def rank_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (tied scores count half), what roc_auc_score gives. Written
    here because the bootstrap intervals call it thousands of times a run, and roc_auc_score's input
    checks cost about 1.4 ms a call (the training tests ran 3x longer with it)."""
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if not n_positive or not n_negative:
        raise ValueError("ROC AUC needs both classes in the truth")
    ranks = rankdata(np.asarray(scores).reshape(-1))
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def counts_matrix(label_ids: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true label id, columns: decided label id."""
    cells = np.asarray(label_ids).reshape(-1) * num_classes + np.asarray(predicted).reshape(-1)
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerators, denominators, out=np.zeros(len(numerators)), where=denominators > 0)


def multiclass_metrics(
    label_ids: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...]
) -> MulticlassMetrics:
    counts = counts_matrix(label_ids, predicted, len(labels))
    hits, true_totals, decided_totals = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    recall = _ratios(hits, true_totals)
    precision = _ratios(hits, decided_totals)
    f1 = _ratios(2 * hits, true_totals + decided_totals)
    occurring = (true_totals + decided_totals) > 0  # macro averages over the labels in truth or decision
    present = [index for index in range(len(labels)) if 0 < true_totals[index] < len(label_ids)]
    aucs = [rank_auc(label_ids == index, probabilities[:, index]) for index in present]
    return MulticlassMetrics(
        accuracy=float(np.trace(counts) / len(label_ids)),
        roc_auc=float(np.mean(aucs)) if aucs else None,
        macro_precision=float(np.mean(precision[occurring])),
        macro_recall=float(np.mean(recall[occurring])),
        macro_f1=float(np.mean(f1[occurring])),
        quadratic_kappa=quadratic_kappa(label_ids, predicted, len(labels)),
        recall={label: float(value) for label, value in zip(labels, recall, strict=True)},
        n=len(label_ids),
    )


def quadratic_kappa(label_ids: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """1 when every grade is right; 0 when no better than chance (also when only one grade occurs)."""
    if len(np.unique(np.concatenate([label_ids, predicted]))) < 2:
        return 1.0 if np.array_equal(label_ids, predicted) else 0.0
    counts = counts_matrix(label_ids, predicted, num_classes)
    chance = np.outer(counts.sum(axis=1), counts.sum(axis=0)) / counts.sum()
    grades = np.arange(num_classes)
    penalty = (grades[:, None] - grades[None, :]) ** 2
    return float(1.0 - np.sum(penalty * counts) / np.sum(penalty * chance))


# --- calibration ----------------------------------------------------------------------------


def reliability_bins(
    label_ids: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS
) -> list[ReliabilityBin]:
    """Top-class confidence vs accuracy in equal-width confidence bins (the reliability diagram)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == label_ids
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        ReliabilityBin(
            low=float(edges[b]),
            high=float(edges[b + 1]),
            count=int(np.sum(index == b)),
            confidence=float(confidence[index == b].mean()) if np.any(index == b) else 0.0,
            accuracy=float(correct[index == b].mean()) if np.any(index == b) else 0.0,
        )
        for b in range(bins)
    ]


def expected_calibration_error(label_ids: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """Count-weighted mean |accuracy - confidence| over the reliability bins (top-class ECE)."""
    table = reliability_bins(label_ids, probabilities, bins)
    return float(sum(row.count * abs(row.accuracy - row.confidence) for row in table) / len(label_ids))


# --- one split ------------------------------------------------------------------------------


def ece_of_perfect_calibration(probabilities: np.ndarray, seed: int, draws: int = 200) -> Interval:
    """The ECE a perfectly calibrated model with these probabilities measures on this many images
    (each label drawn from the image's own probabilities): the mean and the 95th percentile over
    `draws` draws. The estimate is biased upwards on small splits; a measured ECE below the 95th
    percentile cannot be told apart from perfect calibration."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probabilities / probabilities.sum(axis=1, keepdims=True), axis=1)
    last = probabilities.shape[1] - 1
    values = [
        expected_calibration_error(
            np.minimum((rng.random((len(probabilities), 1)) > cumulative).sum(axis=1), last), probabilities
        )
        for _ in range(draws)
    ]
    return float(np.mean(values)), float(np.quantile(values, 0.95))


def evaluate_split(card: ModelCard, label_ids: np.ndarray, probabilities: np.ndarray) -> SplitEvaluation:
    """The labels `card`'s decision gives the probabilities (as served, so calibrated when the
    model is), measured against the truth."""
    label_ids = np.asarray(label_ids).reshape(-1)
    labels = tuple(card.labels)
    predicted = decided_label_ids(card, probabilities)
    binary = len(labels) == 2
    return SplitEvaluation(
        metrics=decided_metrics(card, label_ids, probabilities, predicted),
        ece=expected_calibration_error(label_ids, probabilities),
        pr_auc=float(average_precision_score(label_ids, probabilities[:, 1])) if binary else None,
        confusion_matrix=confusion_matrix(label_ids, predicted, labels=list(range(len(labels)))).tolist(),
        per_class=per_class_reports(label_ids, predicted, labels),
        reliability=reliability_bins(label_ids, probabilities),
        roc_curve=positive_class_roc(label_ids, probabilities[:, 1]) if binary else None,
    )


def decided_metrics(
    card: ModelCard, label_ids: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray | None = None
) -> BinaryMetrics | MulticlassMetrics:
    """The card metrics of the labels `card`'s decision gives (`predicted`, when already decided)."""
    predicted = decided_label_ids(card, probabilities) if predicted is None else predicted
    if len(card.labels) == 2:
        return binary_metrics_of(label_ids, predicted, probabilities[:, 1])
    return multiclass_metrics(label_ids, predicted, probabilities, tuple(card.labels))


def bootstrap_intervals(
    card: ModelCard, label_ids: np.ndarray, probabilities: np.ndarray, seed: int, level: float = 0.95
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of every card metric (and the ECE) of one split: the split's
    images resampled with replacement; a resample holding one class only (no ROC AUC) is drawn again."""
    label_ids = np.asarray(label_ids).reshape(-1)
    random = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    drawn = 0
    while drawn < BOOTSTRAP_RESAMPLES:
        index = random.integers(0, len(label_ids), len(label_ids))
        truth, resampled = label_ids[index], probabilities[index]
        if len(np.unique(truth)) < 2:
            continue
        drawn += 1
        sample = decided_metrics(card, truth, resampled).for_card()
        sample["ece"] = expected_calibration_error(truth, resampled)
        for name, value in sample.items():
            if name != "n":
                values.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2.0
    return {name: (float(np.quantile(v, tail)), float(np.quantile(v, 1.0 - tail))) for name, v in values.items()}


def positive_class_roc(label_ids: np.ndarray, scores: np.ndarray) -> RocCurve:
    false_positive_rate, true_positive_rate, _ = roc_curve(label_ids, scores)
    return RocCurve(fpr=false_positive_rate.tolist(), tpr=true_positive_rate.tolist())


def per_class_reports(label_ids: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]) -> dict[str, ClassReport]:
    table = classification_report(
        label_ids,
        predicted,
        labels=list(range(len(labels))),
        target_names=list(labels),
        output_dict=True,
        zero_division=0,
    )
    return {
        label: ClassReport(
            precision=table[label]["precision"],
            recall=table[label]["recall"],
            f1=table[label]["f1-score"],
            support=int(table[label]["support"]),
        )
        for label in labels
    }


def operating_point(
    val_label_ids: np.ndarray,
    val_scores: np.ndarray,
    test_label_ids: np.ndarray,
    test_scores: np.ndarray,
    target_sensitivity: float,
    shipped_threshold: float,
) -> OperatingPoint:
    """The threshold at which val reaches a target sensitivity, and the specificity it costs on
    test against the shipped threshold."""
    threshold = sensitivity_threshold(val_label_ids, val_scores, target_sensitivity)
    at_target = binary_metrics(test_label_ids, test_scores, threshold)
    shipped = binary_metrics(test_label_ids, test_scores, shipped_threshold)
    return OperatingPoint(
        target_sensitivity=target_sensitivity,
        threshold=threshold,
        test_sensitivity=at_target.sensitivity,
        test_specificity=at_target.specificity,
        specificity_cost=shipped.specificity - at_target.specificity,
    )
