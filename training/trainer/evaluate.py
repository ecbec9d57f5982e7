"""Stage 3, evaluate: `evaluate(fitted, dataset, config)` -> an `Evaluation`.

The choices are made on val: the temperature T (minimum NLL of softmax(log(p) / T)), a binary
model's threshold on its positive class (highest Youden's J among thresholds keeping val
sensitivity >= min_sensitivity; other models decide by arg-max) and the OOD flagging threshold
(a quantile of the val scores). Every metric is of the calibrated probabilities, with the labels
`cxr_model.answer` decides from them, as served. Test is only scored, after every choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras
import numpy as np
from pydantic import BaseModel

from cxr_model.answer import calibrated
from cxr_model.card import Calibration, Decision, ModelCard, TensorSpec
from trainer.baselines import Baseline, Embedded, TsneMap, embedding_baselines, tsne_map
from trainer.config import TrainConfig
from trainer.data import Dataset, config_spec
from trainer.decision import decided_label_ids, positive_class
from trainer.fit import FitResult, best_epoch
from trainer.metrics import (
    Interval,
    OperatingPoint,
    ReliabilityBin,
    SplitEvaluation,
    bootstrap_intervals,
    choose_threshold,
    ece_of_perfect_calibration,
    evaluate_split,
    expected_calibration_error,
    operating_point,
    reliability_bins,
)
from trainer.model import INPUT_NAME, OUTPUT_NAME
from trainer.trust import (
    OodEvaluation,
    fit_temperature,
    ood_metrics,
    ood_threshold,
    out_of_distribution_images,
    test_flag_figures,
)

log = logging.getLogger("trainer")
SCORED_SPLITS = ("val", "test")
Scorer = Callable[[np.ndarray], np.ndarray]  # images -> one value (or row) per image


class PerImageScores(BaseModel):
    """Per test image, as served: the truth, the calibrated probabilities and the source (image-csv
    `source` column). The report's curves are drawn from these."""

    label_ids: list[int]
    decided_ids: list[int]  # the label the card's decision gives, as served
    probabilities: list[list[float]]
    sources: list[str] | None = None

    def worst_errors(self, count: int) -> list[int]:
        """The wrongly decided images, the lowest probability of the true class first."""
        truth, decided = np.asarray(self.label_ids), np.asarray(self.decided_ids)
        true_probability = np.asarray(self.probabilities)[np.arange(len(truth)), truth]
        wrong = np.flatnonzero(decided != truth)
        return wrong[np.argsort(true_probability[wrong], kind="stable")][:count].tolist()


class Evaluation(BaseModel):
    """What was chosen on val and measured on val and test; the card and the report are made from it."""

    title: str
    labels: list[str]
    decision: Decision
    calibration: Calibration | None
    val: SplitEvaluation
    test: SplitEvaluation
    uncalibrated_reliability: dict[str, list[ReliabilityBin]]
    operating_point: OperatingPoint | None = None  # binary models
    ood: OodEvaluation | None = None
    baselines: dict[str, Baseline] = {}
    tsne: TsneMap | None = None
    intervals: dict[str, dict[str, Interval]] = {}  # split -> metric -> bootstrap 95% interval
    test_images: PerImageScores | None = None  # None in reports written before they were kept
    # split -> (mean, 95th percentile) of the ECE a perfectly calibrated model would measure there
    ece_of_perfect_calibration: dict[str, Interval] = {}
    history: dict[str, list[float]] = {}  # per epoch, Keras' names (loss, val_loss, val_auc, ...)
    best_epoch: int | None = None  # 1-based: the epoch whose weights the model keeps

    def card_metrics(self) -> dict[str, dict[str, float]]:
        """The card's `metrics`: val and test, and calibration in a section of its own."""
        return {
            "val": self.val.metrics.for_card(),
            "test": self.test.metrics.for_card(),
            "calibration": {"val_ece": self.val.ece, "test_ece": self.test.ece},
        }


def evaluate(fitted: FitResult, dataset: Dataset, config: TrainConfig, chosen: ModelCard | None = None) -> Evaluation:
    """The Keras model's evaluation, with its OOD guard, embedding baselines and t-SNE map.

    `chosen`: a card whose temperature, decision and OOD threshold are kept rather than chosen
    again (re-evaluating an exported run)."""
    probabilities_of = predictor(fitted.model, config.batch_size)
    raw = {name: probabilities_of(dataset.splits[name].images) for name in SCORED_SPLITS}
    rule = chosen or choose_on_val(raw["val"], dataset, config)
    evaluation = measure(raw, dataset, rule, config, f"{config.architecture} on {source_name(dataset)}")
    log_decision(evaluation)
    embed = predictor(fitted.embedding, config.batch_size)
    ood_threshold_chosen = chosen.ood.threshold if chosen and chosen.ood else None
    ood = evaluate_ood(
        lambda images: fitted.ood.scores(embed(images)),
        dataset,
        config,
        ood_threshold_chosen,
        decided_correctly(evaluation),
    )
    epochs = {"history": fitted.history, "best_epoch": best_epoch(fitted.history, config.monitor)}
    evaluation = evaluation.model_copy(update={"ood": ood} | epochs)
    if not config.embedding_baselines:
        return evaluation
    baselines, tsne = embedding_comparisons(embed, fitted, dataset, rule, config)
    return evaluation.model_copy(update={"baselines": baselines, "tsne": tsne})


def log_decision(evaluation: Evaluation) -> None:
    val, test = evaluation.val.metrics.summary(), evaluation.test.metrics.summary()
    log.info("decision %s; val %s; test %s", evaluation.decision.model_dump(), val, test)


def embedding_comparisons(
    embed: Scorer, fitted: FitResult, dataset: Dataset, rule: ModelCard, config: TrainConfig
) -> tuple[dict[str, Baseline], TsneMap]:
    """The SVM and random forest on the embeddings, and the t-SNE map of train and test."""
    splits = {"train": fitted.train} | {name: dataset.splits[name] for name in SCORED_SPLITS}
    embeddings = {name: embed(split.images) for name, split in splits.items()}
    label_ids = {name: split.label_ids for name, split in splits.items()}
    baselines = embedding_baselines(embeddings, label_ids, rule, config.min_sensitivity, config.seed)
    mapped = {name: Embedded(embeddings[name], label_ids[name], splits[name].sources) for name in ("train", "test")}
    return baselines, tsne_map(mapped, dataset.labels, config.seed)


def predictor(model: keras.Model, batch_size: int) -> Scorer:
    return lambda images: np.asarray(model.predict(images, batch_size=batch_size, verbose=0))


def source_name(dataset: Dataset) -> str:
    return dataset.source.file or dataset.source.dataset


def draft_card(dataset: Dataset, config: TrainConfig, calibration: Calibration | None = None) -> ModelCard:
    """The card as far as evaluation knows it, before there is an ONNX file: the contract of the
    Keras model (the exported graph's input and first output), its labels and calibration.
    `decide` and `calibrated` read it as the server reads the final card."""
    size, channels = config.image_size, config.channels
    return ModelCard(
        name=config.model_name,
        version=config.model_version,
        task=dataset.task,
        labels=list(dataset.labels),
        classes=dataset.classes,
        inputs=[TensorSpec(name=INPUT_NAME, datatype="FP32", shape=[-1, size, size, channels])],
        outputs=[TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=[-1, len(dataset.labels)])],
        preprocessing=config_spec(config),
        calibration=calibration,
        onnx_sha256="",  # export writes the file and its hash
    )


def choose_on_val(raw_val: np.ndarray, dataset: Dataset, config: TrainConfig) -> ModelCard:
    """The draft card with the temperature fitted on val and, for a binary model, the threshold
    chosen on the calibrated val probabilities of its positive class."""
    card = draft_card(dataset, config, Calibration(temperature=fit_temperature(dataset.val.label_ids, raw_val)))
    positive = positive_class(dataset.labels)
    if positive is None:
        return card
    scores = calibrated(card, raw_val)[:, 1]
    threshold = choose_threshold(dataset.val.label_ids, scores, config.min_sensitivity)
    return card.model_copy(update={"decision": Decision(positive_class=positive, threshold=threshold)})


def measure(
    raw: dict[str, np.ndarray], dataset: Dataset, rule: ModelCard, config: TrainConfig, title: str
) -> Evaluation:
    """val and test scored as served by a model with `rule`'s calibration and decision."""
    label_ids = {name: dataset.splits[name].label_ids for name in SCORED_SPLITS}
    served = {name: calibrated(rule, values) for name, values in raw.items()}
    val, test = (evaluate_split(rule, label_ids[name], served[name]) for name in SCORED_SPLITS)
    threshold = rule.decision.threshold
    point = None
    if dataset.binary and threshold is not None:
        point = operating_point(
            label_ids["val"],
            served["val"][:, 1],
            label_ids["test"],
            served["test"][:, 1],
            config.target_sensitivity,
            threshold,
        )
    calibration = None
    if rule.calibration is not None:
        before = {name: expected_calibration_error(label_ids[name], raw[name]) for name in SCORED_SPLITS}
        after = {"val": val.ece, "test": test.ece}
        ece = {name: {"before": before[name], "after": after[name]} for name in SCORED_SPLITS}
        calibration = rule.calibration.model_copy(update={"ece": ece})
    return Evaluation(
        title=title,
        labels=list(dataset.labels),
        decision=rule.decision,
        calibration=calibration,
        val=val,
        test=test,
        uncalibrated_reliability={name: reliability_bins(label_ids[name], raw[name]) for name in SCORED_SPLITS},
        operating_point=point,
        intervals={
            name: bootstrap_intervals(rule, label_ids[name], served[name], config.seed) for name in SCORED_SPLITS
        },
        test_images=per_image_scores(dataset, served["test"], rule),
        ece_of_perfect_calibration={
            name: ece_of_perfect_calibration(served[name], config.seed) for name in SCORED_SPLITS
        },
    )


def per_image_scores(dataset: Dataset, served_test: np.ndarray, rule: ModelCard) -> PerImageScores:
    sources = dataset.test.sources
    return PerImageScores(
        label_ids=dataset.test.label_ids.reshape(-1).tolist(),
        decided_ids=decided_label_ids(rule, served_test).tolist(),
        probabilities=served_test.tolist(),
        sources=None if sources is None else [str(source) for source in sources],
    )


def decided_correctly(evaluation: Evaluation) -> np.ndarray | None:
    """Per test image: whether the label decided as served is the true one (from the kept per-image scores)."""
    scores = evaluation.test_images
    return None if scores is None else np.asarray(scores.decided_ids) == np.asarray(scores.label_ids)


def evaluate_ood(
    score: Scorer,
    dataset: Dataset,
    config: TrainConfig,
    threshold: float | None = None,
    test_correct: np.ndarray | None = None,
) -> OodEvaluation:
    """The OOD guard: flagged above `threshold` (default: the configured quantile of the val
    scores); test images (in distribution) vs out-of-distribution images through the serving
    preprocessing. With `test_correct` (per test image), the accuracy on the flagged and the
    unflagged test images; with the test split's sources, the flag rate of each."""
    val_scores, test_scores = score(dataset.val.images), score(dataset.test.images)
    if threshold is None:
        threshold = ood_threshold(val_scores, config.ood_val_quantile)
    out_images = out_of_distribution_images(config_spec(config), config.data_dir, dataset.test.images, config.seed)
    out_scores = {kind: score(images) for kind, images in out_images.items()}
    metrics = ood_metrics(test_scores, out_scores, threshold, val_scores)
    metrics = metrics.model_copy(update=test_flag_figures(test_scores > threshold, test_correct, dataset.test.sources))
    log.info("OOD threshold %.3f; %s", threshold, metrics.for_card())
    scores = scores_by_source(test_scores, dataset.test.sources) | {kind: s.tolist() for kind, s in out_scores.items()}
    return OodEvaluation(threshold=threshold, metrics=metrics, scores=scores)


def scores_by_source(scores: np.ndarray, sources: np.ndarray | None) -> dict[str, list[float]]:
    if sources is None:
        return {"test": scores.tolist()}
    return {f"test: {source}": scores[sources == source].tolist() for source in np.unique(sources)}
