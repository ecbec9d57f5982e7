"""Stage 2, fit: `fit(dataset, config, run_dir)` -> the trained model and what was fitted with it.

AdamW with class weights (or oversampling), early stopping, best-checkpointing and learning
rate reduction on `config.monitor`; resnet101v2 can add a fine-tuning phase. The
out-of-distribution guard's class means and covariance are fitted here too, on the same
training images.
"""

from __future__ import annotations

import logging
import platform
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx
from pydantic import BaseModel

from trainer.config import TrainConfig
from trainer.data import DataError, Dataset, DataSource, Split
from trainer.decision import decision_rule_text
from trainer.model import BACKBONE_LAYER, build_model, compile_model, embedding_model
from trainer.trust import Mahalanobis, fit_mahalanobis

log = logging.getLogger("trainer")
CHECKPOINT = "best.keras"
# balance_sources: no image weighs more than this (mean weight 1), so a source with a handful of
# images of a class is not repeated into memory
MAX_SOURCE_WEIGHT = 5.0


@dataclass(frozen=True)
class FitResult:
    model: keras.Model
    embedding: keras.Model  # image -> the features the classifier sees (the model's own layers)
    history: dict[str, list[float]]  # per epoch, Keras' names (loss, val_auc, ...)
    train: Split  # the images the model was fitted on, before any oversampling
    ood: Mahalanobis  # class means and covariance of their embeddings
    fit_seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.history["loss"])


class TrainingRecord(BaseModel):
    """How the model was trained: the card's `training` section."""

    data: DataSource
    splits: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    imbalance: str
    class_weight: dict[str, float] | None
    architecture: str
    epochs_run: int
    best_epoch: int
    seed: int
    config: dict[str, Any]
    threshold_rule: str
    val_metrics_note: str = "val chose the threshold and the best epoch, so its metrics are optimistic"
    onnx_opset: int
    versions: dict[str, str]
    date: str
    fit_seconds: float
    wall_seconds: float
    history: dict[str, list[float]] = {}  # per epoch (the report's learning curves)

    def for_card(self) -> dict[str, Any]:
        return self.model_dump(mode="json") | {"data": self.data.model_dump(mode="json", exclude_none=True)}


def fix_seeds(seed: int) -> None:
    """Python, NumPy, TensorFlow and Keras generators seeded, TensorFlow ops deterministic."""
    keras.backend.clear_session()  # after set_random_seed it would drop Keras' seed again
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(dataset: Dataset, config: TrainConfig, run_dir: Path) -> FitResult:
    """Build, fit (checkpointing to run_dir) and fit the OOD statistics; seed first (`fix_seeds`)."""
    train = training_subset(dataset.train, config)
    require_every_class(dataset, train)
    model = build_model(config, len(dataset.labels))
    model.summary(print_fn=lambda line, **_: log.info(line))
    clock = time.monotonic()
    history = fit_phases(model, train, dataset.val, config, run_dir)
    fit_seconds = time.monotonic() - clock
    log.info(
        "trained %d epochs in %.0f s; best epoch %d",
        len(history["loss"]),
        fit_seconds,
        best_epoch(history, config.monitor),
    )
    embedding = embedding_model(model)
    ood = fit_ood_statistics(embedding, train, len(dataset.labels), config.batch_size)
    return FitResult(model, embedding, history, train, ood, fit_seconds)


def require_every_class(dataset: Dataset, train: Split) -> None:
    missing = [label for label, count in dataset.counts(train).items() if count == 0]
    if missing:
        raise DataError(f"the training subset has no examples of class {', '.join(missing)}; raise --max-train-samples")


def fit_phases(
    model: keras.Model, train: Split, val: Split, config: TrainConfig, run_dir: Path
) -> dict[str, list[float]]:
    """One phase; for resnet101v2 with fine_tune_epochs a second with the backbone unfrozen at a lower rate."""
    fitted = oversample(train, config.seed) if config.oversample else train
    history = fit_phase(model, fitted, val, config, run_dir, config.epochs, config.learning_rate)
    if config.architecture == "resnet101v2" and config.fine_tune_epochs:
        log.info("fine-tuning the whole network for %d epochs", config.fine_tune_epochs)
        model.get_layer(BACKBONE_LAYER).trainable = True
        rate = config.learning_rate * config.fine_tune_lr_factor
        second = fit_phase(model, fitted, val, config, run_dir, config.fine_tune_epochs, rate)
        history = {key: history[key] + second.get(key, []) for key in history}
    return history


def fit_phase(
    model: keras.Model,
    train: Split,
    val: Split,
    config: TrainConfig,
    run_dir: Path,
    epochs: int,
    learning_rate: float,
) -> dict[str, list[float]]:
    compile_model(model, config, learning_rate)
    weights = source_balanced_weights(train) if config.balance_sources else None
    # oversampling and source-balanced image weights already balance the classes
    class_weight = (
        None
        if config.oversample or weights is not None
        else balanced_class_weights(train.label_ids, model.output_shape[-1])
    )
    history = model.fit(
        batches(train, config.batch_size, shuffle_seed=config.seed, weights=weights),
        validation_data=batches(val, config.batch_size),
        epochs=epochs,
        class_weight=class_weight,
        callbacks=training_callbacks(config, run_dir),
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras cannot shuffle a Dataset
        verbose=config.verbose,
    ).history
    return {key: [float(value) for value in values] for key, values in history.items()}


def fit_ood_statistics(embedding: keras.Model, train: Split, num_classes: int, batch_size: int) -> Mahalanobis:
    embeddings = embedding.predict(train.images, batch_size=batch_size, verbose=0)
    return fit_mahalanobis(embeddings, train.label_ids, num_classes)


# --- the training images ----------------------------------------------------------------


def training_subset(train: Split, config: TrainConfig) -> Split:
    """The train split, or its seeded subset for quick runs (--max-train-samples)."""
    return subsample(train, config.max_train_samples, config.seed)


def subsample(split: Split, max_samples: int | None, seed: int) -> Split:
    """A seeded random subset; the split itself when no limit or already small."""
    if max_samples is None or max_samples >= len(split):
        return split
    chosen = np.sort(np.random.default_rng(seed).permutation(len(split))[:max_samples])
    sources = None if split.sources is None else split.sources[chosen]
    return Split(images=split.images[chosen], label_ids=split.label_ids[chosen], sources=sources)


def oversample(split: Split, seed: int) -> Split:
    """Every class repeated (seeded random picks) up to the largest class's count; the model's
    augmentation makes the repeats differ."""
    rng = np.random.default_rng(seed)
    largest = max(Counter(split.label_ids.tolist()).values())
    parts = []
    for label in np.unique(split.label_ids):
        members = np.flatnonzero(split.label_ids == label)
        parts += [members, rng.choice(members, size=largest - len(members))]
    rows = np.concatenate(parts)
    return Split(images=split.images[rows], label_ids=split.label_ids[rows])


def class_counts(label_ids: np.ndarray, num_classes: int) -> dict[int, int]:
    return {label: int(np.sum(label_ids == label)) for label in range(num_classes)}


def balanced_class_weights(label_ids: np.ndarray, num_classes: int) -> dict[int, float]:
    """n / (classes * count): each class contributes the same total weight to the loss."""
    counts = class_counts(label_ids, num_classes)
    missing = [label for label, count in counts.items() if count == 0]
    if missing:
        raise ValueError(f"no training examples of label ids {missing}")
    return {label: len(label_ids) / (num_classes * count) for label, count in counts.items()}


def source_balanced_weights(split: Split) -> np.ndarray:
    """One weight per image: every class weighs the same in total, and within a class every source
    that has images of it; capped at MAX_SOURCE_WEIGHT times the mean, then scaled to mean 1."""
    if split.sources is None:
        raise DataError("balance_sources needs a `source` column in the label file (image-csv)")
    cells = [(source, label) for source, label in zip(split.sources.tolist(), split.label_ids.tolist(), strict=True)]
    counts = Counter(cells)
    sources_per_class = Counter(label for _, label in counts)
    classes = len(sources_per_class)
    weights = np.array(
        [1.0 / (classes * sources_per_class[label] * counts[(source, label)]) for source, label in cells]
    )
    weights = np.minimum(weights / weights.mean(), MAX_SOURCE_WEIGHT)
    return (weights / weights.mean()).astype(np.float32)


def batches(
    split: Split, batch_size: int, shuffle_seed: int | None = None, weights: np.ndarray | None = None
) -> tf.data.Dataset:
    """(image, label id[, weight]) batches; shuffled (reshuffled every epoch, deterministically) given a seed."""
    columns = (split.images, split.label_ids) if weights is None else (split.images, split.label_ids, weights)
    pipeline = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle_seed is not None:
        pipeline = pipeline.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    return pipeline.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --- callbacks --------------------------------------------------------------------------


class EpochLog(keras.callbacks.Callback):
    """One line per epoch in train.log (Keras prints its own progress to the console)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        seconds = time.monotonic() - self.started
        log.info("epoch %d/%d %.1fs %s", epoch + 1, self.params["epochs"], seconds, scalars_text(logs or {}))


def monitor_mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


def training_callbacks(config: TrainConfig, run_dir: Path) -> list[keras.callbacks.Callback]:
    mode = monitor_mode(config.monitor)
    return [
        keras.callbacks.EarlyStopping(
            monitor=config.monitor,
            mode=mode,
            patience=config.early_stopping_patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ModelCheckpoint(run_dir / CHECKPOINT, monitor=config.monitor, mode=mode, save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor=config.monitor,
            mode=mode,
            factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience,
            min_lr=config.min_learning_rate,
        ),
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=True),
        EpochLog(),
    ]


def scalars_text(values: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={float(value):.4f}" for key, value in values.items() if isinstance(value, int | float | np.number)
    )


def best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """1-based epoch with the best monitored value (the weights EarlyStopping restores)."""
    values = np.asarray(history[monitor])
    return int(np.argmin(values) if monitor_mode(monitor) == "min" else np.argmax(values)) + 1


# --- the record -------------------------------------------------------------------------


def training_record(
    fitted: FitResult, dataset: Dataset, config: TrainConfig, started: datetime, wall_seconds: float
) -> TrainingRecord:
    splits = dataset.splits | {"train": fitted.train}
    class_weight = (
        None
        if config.oversample or config.balance_sources
        else balanced_class_weights(fitted.train.label_ids, len(dataset.labels))
    )
    return TrainingRecord(
        data=dataset.source,
        splits={name: len(split) for name, split in splits.items()},
        class_counts={name: dataset.counts(split) for name, split in splits.items()},
        imbalance=imbalance_text(config),
        class_weight=None if class_weight is None else {dataset.labels[i]: w for i, w in class_weight.items()},
        architecture=config.architecture,
        epochs_run=fitted.epochs_run,
        best_epoch=best_epoch(fitted.history, config.monitor),
        seed=config.seed,
        config=config.hyperparameters(),
        threshold_rule=decision_rule_text(dataset.labels, config.min_sensitivity),
        onnx_opset=config.opset,
        versions=library_versions(),
        date=started.date().isoformat(),
        fit_seconds=round(fitted.fit_seconds, 1),
        wall_seconds=round(wall_seconds, 1),
        history={name: [round(value, 6) for value in values] for name, values in fitted.history.items()},
    )


def imbalance_text(config: TrainConfig) -> str:
    if config.balance_sources:
        return f"image weights balancing the sources within each class and the classes (capped at {MAX_SOURCE_WEIGHT}x)"
    return "oversampled with augmentation" if config.oversample else "class weights"


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
