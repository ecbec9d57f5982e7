"""Bootstrap confidence intervals of a split's metrics (the card's `metrics_ci`), and the ECE a perfectly
calibrated model would measure on a split of that size."""

import numpy as np
import pytest
from training_support import binary_card, card_for

from trainer.metrics import bootstrap_intervals, decided_metrics, ece_of_perfect_calibration, expected_calibration_error


def scored(count: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-class truth and probabilities that follow it up to `noise`."""
    random = np.random.default_rng(seed)
    truth = random.integers(0, 2, count)
    positive = np.clip(truth + random.normal(0.0, noise, count), 0.0, 1.0)
    return truth, np.stack([1.0 - positive, positive], axis=1)


def test_every_card_metric_has_an_interval_around_its_value():
    card = binary_card(0.5)
    truth, probabilities = scored(400, 0.5)
    values = decided_metrics(card, truth, probabilities).for_card()
    intervals = bootstrap_intervals(card, truth, probabilities, seed=1)
    assert set(intervals) == (set(values) - {"n"}) | {"ece"}
    for name, (low, high) in intervals.items():
        assert low < high, name
        if name != "ece":
            assert low <= values[name] <= high, name


def test_intervals_narrow_as_the_split_grows():
    card = binary_card(0.5)
    small = bootstrap_intervals(card, *scored(100, 0.5), seed=1)["roc_auc"]
    large = bootstrap_intervals(card, *scored(1600, 0.5), seed=1)["roc_auc"]
    assert large[1] - large[0] < (small[1] - small[0]) / 2


def test_multiclass_intervals_include_per_class_recall():
    card = card_for(("a", "b", "c"))
    random = np.random.default_rng(0)
    truth = random.integers(0, 3, 300)
    probabilities = np.full((300, 3), 0.1)
    probabilities[np.arange(300), truth] = 0.8
    intervals = bootstrap_intervals(card, truth, probabilities, seed=0)
    assert intervals["recall_a"] == (1.0, 1.0)
    assert {"accuracy", "macro_f1", "roc_auc", "ece"} <= set(intervals)


def test_the_ece_a_perfectly_calibrated_model_measures_shrinks_with_the_split():
    """Labels drawn from p = 0.5: the ECE is |accuracy - 0.5|, whose mean is sqrt(0.25 / n) * sqrt(2 / pi)."""
    for count in (100, 10_000):
        probabilities = np.full((count, 2), 0.5)
        mean, high = ece_of_perfect_calibration(probabilities, seed=0, draws=400)
        expected = np.sqrt(0.25 / count) * np.sqrt(2 / np.pi)
        assert mean == pytest.approx(expected, rel=0.15) and high > mean
    # three classes: the labels follow each row's probabilities, so the floor stays small on a large split
    rows = np.random.default_rng(0).dirichlet((1.0, 1.0, 1.0), 5000)
    mean, high = ece_of_perfect_calibration(rows, seed=0, draws=50)
    assert 0 < mean < high < 0.03
    # a model that is not calibrated measures far above it
    assert expected_calibration_error(np.zeros(5000, dtype=int), rows) > 10 * high
