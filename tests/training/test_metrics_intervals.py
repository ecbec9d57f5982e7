"""Bootstrap confidence intervals of a split's metrics (the card's `metrics_ci`)."""

import numpy as np
from training_support import binary_card, card_for

from trainer.metrics import bootstrap_intervals, decided_metrics


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
