"""Train, evaluate, export and check the pneumonia-xray model: `python -m trainer.train --help`.

A run writes its record (config.json, history.csv/json, train.log, best.keras, the
candidate model.onnx) to `<runs-dir>/<UTC timestamp>/`, and only once the ONNX model
reproduces the Keras model on the whole test split does it write model.onnx and
model.json into `<output-dir>`.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx
from inference.card import ModelCard, file_sha256

from trainer.config import DATA_FILE, MODEL_NAME, MODEL_VERSION, TrainConfig, parse_config
from trainer.data import (
    LABELS,
    POSITIVE_CLASS,
    DataNotFoundError,
    Split,
    balanced_class_weights,
    class_counts,
    load_splits,
    make_dataset,
    preprocessing_spec,
    subsample,
)
from trainer.evaluate import THRESHOLD_RULE, binary_metrics, choose_threshold
from trainer.export import (
    ParityError,
    build_card,
    check_parity,
    onnx_probabilities,
    parity_report,
    to_onnx,
    write_card,
    write_onnx,
)
from trainer.model import build_model, compile_model

log = logging.getLogger("trainer")


def make_deterministic(seed: int) -> None:
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow generators
    tf.config.experimental.enable_op_determinism()


def create_run_dir(runs_dir: Path, started: datetime) -> Path:
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(100):
        run_dir = runs_dir / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run folder under {runs_dir}")


def setup_logging(run_dir: Path) -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / "train.log")):
        handler.setFormatter(formatter)
        log.addHandler(handler)


def write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


class EpochLog(keras.callbacks.Callback):
    """One log line per epoch (console and train.log) instead of Keras' progress output."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self.started
        log.info("epoch %d/%d %.1fs %s", epoch + 1, self.params["epochs"], seconds, _fmt(logs or {}))


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
        keras.callbacks.ModelCheckpoint(run_dir / "best.keras", monitor=config.monitor, mode=mode, save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor=config.monitor,
            mode=mode,
            factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience,
            min_lr=config.min_learning_rate,
        ),
        keras.callbacks.CSVLogger(run_dir / "history.csv"),
        EpochLog(),
    ]


def _fmt(values: dict) -> str:
    return " ".join(f"{key}={float(value):.4f}" for key, value in values.items())


def best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """1-based epoch with the best monitored value (the weights EarlyStopping restores)."""
    values = np.asarray(history[monitor])
    return int(np.argmin(values) if monitor_mode(monitor) == "min" else np.argmax(values)) + 1


def positive_scores(model: keras.Model, split: Split, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All class probabilities, and p(pneumonia) alone."""
    probabilities = model.predict(split.images, batch_size=batch_size, verbose=0)
    return probabilities, probabilities[:, POSITIVE_CLASS]


def by_label(values: dict[int, float]) -> dict[str, float]:
    return {LABELS[label]: value for label, value in values.items()}


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


def fit(model: keras.Model, train: Split, val: Split, config: TrainConfig, run_dir: Path) -> dict[str, list[float]]:
    compile_model(model, config)
    history = model.fit(
        make_dataset(train, config.batch_size, shuffle_seed=config.seed),
        validation_data=make_dataset(val, config.batch_size),
        epochs=config.epochs,
        class_weight=balanced_class_weights(train.labels),
        callbacks=training_callbacks(config, run_dir),
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras cannot shuffle a Dataset
        verbose=0,
    ).history
    history = {key: [float(value) for value in values] for key, values in history.items()}
    write_json(run_dir / "history.json", history)
    return history


def export_checked(
    model: keras.Model,
    test: Split,
    test_probabilities: np.ndarray,
    threshold: float,
    config: TrainConfig,
    run_dir: Path,
) -> tuple[onnx.ModelProto, dict]:
    """The ONNX model and its parity report; raises ParityError unless it reproduces Keras on the test split."""
    model_proto = to_onnx(model, config.opset)
    model_bytes = model_proto.SerializeToString()
    (run_dir / "model.onnx").write_bytes(model_bytes)  # kept for inspection even if the check fails
    parity = parity_report(test_probabilities, onnx_probabilities(model_bytes, test.images), threshold)
    log.info("ONNX parity %s", parity)
    check_parity(parity, config.parity_max_abs_diff)
    return model_proto, parity


def training_record(config: TrainConfig, splits: dict[str, Split], history: dict[str, list[float]]) -> dict:
    """The card's `training` section, without timings."""
    return {
        "data": {
            "file": DATA_FILE,
            "sha256": file_sha256(config.data_file),
            "source": "PneumoniaMNIST, MedMNIST v2 (Yang et al. 2023), CC BY 4.0",
        },
        "splits": {name: len(split) for name, split in splits.items()},
        "class_counts": {name: by_label(class_counts(split.labels)) for name, split in splits.items()},
        "class_weight": by_label(balanced_class_weights(splits["train"].labels)),
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch(history, config.monitor),
        "seed": config.seed,
        "config": config.hyperparameters(),
        "threshold_rule": THRESHOLD_RULE.format(min_sensitivity=config.min_sensitivity),
        "val_metrics_note": "val chose the threshold and the best epoch, so its metrics are optimistic",
        "onnx_opset": config.opset,
        "versions": library_versions(),
    }


def run(config: TrainConfig) -> ModelCard:
    keras.backend.clear_session()
    started = datetime.now(UTC)
    clock = time.monotonic()
    run_dir = create_run_dir(config.runs_dir, started)
    setup_logging(run_dir)
    write_json(run_dir / "config.json", config.to_json_dict())
    log.info("run folder %s", run_dir)
    make_deterministic(config.seed)

    spec = preprocessing_spec(config.image_size)
    splits = load_splits(config.data_file, spec)
    splits["train"] = subsample(splits["train"], config.max_train_samples, config.seed)
    train, val, test = splits["train"], splits["val"], splits["test"]
    for name, split in splits.items():
        log.info("%s: %d images %s", name, len(split), by_label(class_counts(split.labels)))

    model = build_model(config)
    model.summary(print_fn=lambda line, **_: log.info(line))
    fit_clock = time.monotonic()
    history = fit(model, train, val, config, run_dir)
    fit_seconds = time.monotonic() - fit_clock
    epochs_run, chosen_epoch = len(history["loss"]), best_epoch(history, config.monitor)
    log.info("trained %d epochs in %.0f s; best epoch %d", epochs_run, fit_seconds, chosen_epoch)

    _, val_scores = positive_scores(model, val, config.batch_size)
    threshold = choose_threshold(val.labels, val_scores, config.min_sensitivity)
    # The test split is used exactly once, here, after every choice has been made on val.
    test_probabilities, test_scores = positive_scores(model, test, config.batch_size)
    metrics = {
        "test": binary_metrics(test.labels, test_scores, threshold),
        "val": binary_metrics(val.labels, val_scores, threshold),
    }
    log.info("threshold %.4f; val %s; test %s", threshold, _fmt(metrics["val"]), _fmt(metrics["test"]))

    model_proto, metrics["onnx_parity"] = export_checked(model, test, test_probabilities, threshold, config, run_dir)
    onnx_path = write_onnx(model_proto.SerializeToString(), config.output_dir)
    training = training_record(config, splits, history) | {
        "date": started.date().isoformat(),
        "fit_seconds": round(fit_seconds, 1),
        "wall_seconds": round(time.monotonic() - clock, 1),
    }
    card = build_card(
        model_proto,
        name=MODEL_NAME,
        version=MODEL_VERSION,
        preprocessing=spec,
        threshold=threshold,
        metrics=metrics,
        training=training,
        onnx_sha256=file_sha256(onnx_path),
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    card_path = write_card(card, config.output_dir)
    write_json(run_dir / "model.json", json.loads(card.model_dump_json()))
    log.info("wrote %s and %s", onnx_path, card_path)
    return card


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        run(config)
    except (DataNotFoundError, ParityError) as error:
        log.error("%s", error)  # without handlers, logging.lastResort prints it
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
