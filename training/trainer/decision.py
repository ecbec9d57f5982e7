"""How a label is decided from a model's probabilities: by `cxr_model.answer`, as the server decides.

Training measures its metrics, checks ONNX parity and decides its baselines' labels through
`decide` and `calibrated` with the model's card (evaluate.draft_card before export), so the
labels it reports are the labels the service returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_model.answer import calibrated, decide
from cxr_model.card import ModelCard

THRESHOLD_RULE = (
    "p({positive}) >= threshold means {positive}. The threshold maximises Youden's J "
    "(sensitivity + specificity - 1) on the val split among thresholds whose val sensitivity "
    "is at least {min_sensitivity} (screening: a missed {positive} costs more than a false alarm). "
    "It is placed midway between the two neighbouring val scores, so it does not sit on one."
)
ARG_MAX_RULE = "arg-max class"


def positive_class(labels: Sequence[str]) -> str | None:
    """A binary model's positive class: the second label. Other models have none."""
    return labels[1] if len(labels) == 2 else None


def decision_rule_text(labels: Sequence[str], min_sensitivity: float) -> str:
    positive = positive_class(labels)
    if positive is None:
        return ARG_MAX_RULE
    return THRESHOLD_RULE.format(positive=positive, min_sensitivity=min_sensitivity)


def decided_label_ids(card: ModelCard, probabilities: np.ndarray) -> np.ndarray:
    """The label id `decide` gives each row of probabilities (already calibrated, if at all)."""
    labels = card.labels
    decided = [decide(card, dict(zip(labels, row.tolist(), strict=True))) for row in probabilities]
    return np.array([labels.index(label) for label in decided], dtype=np.int32)


def served_label_ids(card: ModelCard, raw_probabilities: np.ndarray) -> np.ndarray:
    """The label id the server gives each row of a model's raw output: calibrated, then decided."""
    return decided_label_ids(card, calibrated(card, raw_probabilities))
