"""What the CNN's embeddings are worth on their own: an SVM and a random forest trained on them
(same splits, same decision rule, same metrics), and a t-SNE map of train and test by class and source."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel
from sklearn.ensemble import RandomForestClassifier
from sklearn.manifold import TSNE
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cxr_model.card import Decision, ModelCard
from trainer.decision import positive_class
from trainer.metrics import SplitEvaluation, choose_threshold, evaluate_split

MAX_BASELINE_TRAIN = 2000  # SVM fitting grows quadratically; a seeded subset is plenty for a baseline
MAX_TSNE_POINTS = 300  # per split


class Baseline(BaseModel):
    decision: Decision  # a binary baseline's threshold is chosen on val like the CNN's
    test: SplitEvaluation


class TsneMap(BaseModel):
    """A seeded sample of train and test embeddings projected to two dimensions; per point its
    split, class and (where the data names them) source."""

    points: list[tuple[float, float]]
    splits: list[str]
    classes: list[str]
    sources: list[str] | None = None


@dataclass(frozen=True)
class Embedded:
    """One split's embeddings with what the t-SNE map colours them by."""

    embeddings: np.ndarray
    label_ids: np.ndarray
    sources: np.ndarray | None = None


def embedding_baselines(
    embeddings: dict[str, np.ndarray],
    label_ids: dict[str, np.ndarray],
    card: ModelCard,
    min_sensitivity: float,
    seed: int,
) -> dict[str, Baseline]:
    """SVM and random forest fitted on the train embeddings, thresholds chosen on val, scored on
    test; each decides as `card` says, with its own threshold and without calibration."""
    labels = tuple(card.labels)
    rows = np.random.default_rng(seed).permutation(len(label_ids["train"]))[:MAX_BASELINE_TRAIN]
    classifiers = {
        "svm": make_pipeline(StandardScaler(), SVC(probability=True, random_state=seed)),
        "random_forest": RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=2),
    }
    results = {}
    for name, classifier in classifiers.items():
        with warnings.catch_warnings():
            # SVC(probability=True) is deprecated from scikit-learn 1.9 for CalibratedClassifierCV,
            # whose cross-validation fails on classes with fewer members than folds (tiny sets).
            warnings.simplefilter("ignore", FutureWarning)
            classifier.fit(embeddings["train"][rows], label_ids["train"][rows])
        val, test = (all_class_probabilities(classifier, embeddings[split], len(labels)) for split in ("val", "test"))
        decision = baseline_decision(labels, label_ids["val"], val, min_sensitivity)
        rule = card.model_copy(update={"decision": decision, "calibration": None})
        results[name] = Baseline(decision=decision, test=evaluate_split(rule, label_ids["test"], test))
    return results


def baseline_decision(
    labels: tuple[str, ...], val_label_ids: np.ndarray, val: np.ndarray, min_sensitivity: float
) -> Decision:
    positive = positive_class(labels)
    if positive is None:
        return Decision()
    return Decision(positive_class=positive, threshold=choose_threshold(val_label_ids, val[:, 1], min_sensitivity))


def all_class_probabilities(classifier: Any, features: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, also those missing from the training subset."""
    probabilities = np.zeros((len(features), num_classes))
    probabilities[:, classifier.classes_] = classifier.predict_proba(features)
    return probabilities


def tsne_map(splits: dict[str, Embedded], labels: Sequence[str], seed: int) -> TsneMap:
    """Up to MAX_TSNE_POINTS of each split, drawn with a seeded generator, projected together."""
    rng = np.random.default_rng(seed)
    chosen = {name: rng.permutation(len(split.embeddings))[:MAX_TSNE_POINTS] for name, split in splits.items()}
    points = np.concatenate([split.embeddings[chosen[name]] for name, split in splits.items()])
    perplexity = float(min(30, max(2, (len(points) - 1) // 3)))
    projected = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    label_ids = np.concatenate([split.label_ids.reshape(-1)[chosen[name]] for name, split in splits.items()])
    sources = [split.sources[chosen[name]] for name, split in splits.items() if split.sources is not None]
    return TsneMap(
        points=[(float(x), float(y)) for x, y in projected],
        splits=[name for name, rows in chosen.items() for _ in rows],
        classes=[labels[int(label)] for label in label_ids],
        sources=[str(source) for source in np.concatenate(sources)] if len(sources) == len(splits) else None,
    )
