"""Train, evaluate, export and check a chest X-ray model: `python -m trainer train --help`.

A run writes its record to `<runs-dir>/<UTC timestamp>/`: config.json, history.csv/json,
train.log, best.keras (the checkpoint, = the trained model), evaluation.json, report/
(JSON, Markdown, PNG plots) and the candidate model.onnx + model.json. Only once the ONNX
model reproduces the Keras model on the whole test split are model.onnx and model.json
written into `<output-dir>`.
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
from inference.trust import calibrate

from trainer.config import MODEL_NAME, MODEL_VERSION, ConfigError, TrainConfig, parse_config, validate
from trainer.data import (
    DataError,
    DataNotFoundError,
    Dataset,
    Split,
    balanced_class_weights,
    class_counts,
    config_spec,
    load_dataset,
    make_dataset,
    oversample,
    subsample,
)
from trainer.evaluate import (
    THRESHOLD_RULE,
    choose_threshold,
    evaluate_predictions,
    expected_calibration_error,
    operating_point,
    reliability_bins,
)
from trainer.export import (
    ParityError,
    build_card,
    check_parity,
    onnx_outputs,
    parity_report,
    to_onnx,
    trust_parity,
    write_card,
    write_onnx,
)
from trainer.model import (
    BACKBONE_LAYER,
    OUTPUT_NAME,
    build_model,
    classifier_kernel,
    compile_model,
    embedding_model,
    trust_model,
)
from trainer.report import embedding_baselines, write_report
from trainer.trust import (
    Mahalanobis,
    fit_mahalanobis,
    fit_temperature,
    ood_metrics,
    ood_threshold,
    out_of_distribution_images,
)

log = logging.getLogger("trainer")
CHECKPOINT = "best.keras"
EVALUATION = "evaluation.json"
OOD_STATISTICS = "ood.npz"
RUN_ERRORS = (ConfigError, DataError, DataNotFoundError, ParityError)


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


def close_logging() -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def setup_logging(run_dir: Path) -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    close_logging()
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / "train.log")):
        handler.setFormatter(formatter)
        log.addHandler(handler)


def write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch in train.log (Keras prints its own progress to the console)."""

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


def _fmt(values: dict) -> str:
    return " ".join(f"{key}={float(value):.4f}" for key, value in values.items() if np.isscalar(value))


def best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """1-based epoch with the best monitored value (the weights EarlyStopping restores)."""
    values = np.asarray(history[monitor])
    return int(np.argmin(values) if monitor_mode(monitor) == "min" else np.argmax(values)) + 1


def by_name(values: dict[int, float], class_names: tuple[str, ...]) -> dict[str, float]:
    return {class_names[label]: value for label, value in values.items()}


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


# --- train ------------------------------------------------------------------------------


def train_subset(dataset: Dataset, config: TrainConfig) -> Split:
    """The train split, or its seeded subset for quick runs (--max-train-samples)."""
    return subsample(dataset.splits["train"], config.max_train_samples, config.seed)


def training_split(dataset: Dataset, config: TrainConfig) -> Split:
    """What the model is fitted on: the train subset, oversampled when configured."""
    train = train_subset(dataset, config)
    return oversample(train, config.seed) if config.oversample else train


def fit_phase(
    model: keras.Model,
    train: Split,
    val: Split,
    config: TrainConfig,
    run_dir: Path,
    epochs: int,
    learning_rate: float,
) -> dict:
    compile_model(model, config, learning_rate)
    num_classes = model.output_shape[-1]
    history = model.fit(
        make_dataset(train, config.batch_size, shuffle_seed=config.seed),
        validation_data=make_dataset(val, config.batch_size),
        epochs=epochs,
        # oversampling already balances the classes
        class_weight=None if config.oversample else balanced_class_weights(train.labels, num_classes),
        callbacks=training_callbacks(config, run_dir),
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras cannot shuffle a Dataset
        verbose=config.verbose,
    ).history
    return {key: [float(value) for value in values] for key, values in history.items()}


def fit(model: keras.Model, dataset: Dataset, config: TrainConfig, run_dir: Path) -> dict[str, list[float]]:
    """Fit; for resnet101v2 with fine_tune_epochs, a second phase with the backbone unfrozen at a lower LR."""
    train, val = training_split(dataset, config), dataset.splits["val"]
    history = fit_phase(model, train, val, config, run_dir, config.epochs, config.learning_rate)
    if config.architecture == "resnet101v2" and config.fine_tune_epochs:
        log.info("fine-tuning the whole network for %d epochs", config.fine_tune_epochs)
        model.get_layer(BACKBONE_LAYER).trainable = True
        fine_tune_rate = config.learning_rate * config.fine_tune_lr_factor
        second = fit_phase(model, train, val, config, run_dir, config.fine_tune_epochs, fine_tune_rate)
        history = {key: history[key] + second.get(key, []) for key in history}
    write_json(run_dir / "history.json", history)
    return history


# --- evaluate ---------------------------------------------------------------------------


def probabilities_of(predict, dataset: Dataset) -> dict[str, np.ndarray]:
    return {name: np.asarray(predict(dataset.splits[name].images)) for name in ("val", "test")}


def evaluate(
    probabilities: dict[str, np.ndarray],
    dataset: Dataset,
    config: TrainConfig,
    threshold: float | None = None,
    temperature: float | None = None,
) -> dict:
    """Temperature (fitted on val unless given), threshold (chosen on the calibrated val
    probabilities unless given; None for multi-class), card metrics and the report.

    `probabilities` are the model's raw outputs; every metric is of the calibrated ones, as
    served. The test split is only scored, after every choice has been made on val.
    """
    binary = len(dataset.class_names) == 2
    labels = {name: dataset.splits[name].labels for name in ("val", "test")}
    if temperature is None:
        temperature = fit_temperature(labels["val"], probabilities["val"])
    calibrated = {name: calibrate(values, temperature) for name, values in probabilities.items()}
    if binary and threshold is None:
        threshold = choose_threshold(labels["val"], calibrated["val"][:, 1], config.min_sensitivity)
    results = {
        name: evaluate_predictions(labels[name], calibrated[name], dataset.class_names, threshold) for name in labels
    }
    calibration = calibration_record(labels, probabilities, results, temperature)
    report = {
        "title": f"{config.architecture} on {dataset.source.get('file', config.data_format)}",
        "threshold": threshold,
    } | results
    report["calibration"] = calibration | {
        "reliability_before": {name: reliability_bins(labels[name], probabilities[name]) for name in labels}
    }
    if binary:
        report["operating_point"] = operating_point(
            labels["val"],
            calibrated["val"][:, 1],
            labels["test"],
            calibrated["test"][:, 1],
            config.target_sensitivity,
            threshold,
        )
    # The card keeps the established keys per split; calibration gets its own section.
    card_metrics = {name: _without(results[name]["metrics"], "ece", "pr_auc") for name in labels}
    card_metrics["calibration"] = {f"{name}_ece": results[name]["metrics"]["ece"] for name in labels}
    return {"threshold": threshold, "metrics": card_metrics, "calibration": calibration, "report": report}


def calibration_record(labels: dict, probabilities: dict, results: dict, temperature: float) -> dict:
    """The card's `calibration`: the temperature and the ECE of each split before and after it."""
    ece = {
        name: {
            "before": expected_calibration_error(labels[name], probabilities[name]),
            "after": results[name]["metrics"]["ece"],
        }
        for name in labels
    }
    return {"method": "temperature", "temperature": temperature, "fitted_on": "val", "ece": ece}


def _without(values: dict, *keys: str) -> dict:
    return {key: value for key, value in values.items() if key not in keys}


def fit_ood(embed, embeddings: dict, labels: dict, dataset: Dataset, config: TrainConfig, run_dir: Path) -> dict:
    """Mahalanobis statistics of the train embeddings (saved to <run_dir>/ood.npz), the flagging
    threshold from val, and the evaluation: test (in) vs out-of-distribution images."""
    mahalanobis = fit_mahalanobis(embeddings["train"], labels["train"], len(dataset.class_names))
    mahalanobis.save(run_dir / OOD_STATISTICS)
    scores = {name: mahalanobis.scores(embeddings[name]) for name in ("val", "test")}
    threshold = ood_threshold(scores["val"], config.ood_val_quantile)
    test_images = dataset.splits["test"].images
    out_images = out_of_distribution_images(config_spec(config), config.data_dir, test_images, config.seed)
    out_scores = {kind: mahalanobis.scores(embed(images)) for kind, images in out_images.items()}
    metrics = ood_metrics(scores["test"], out_scores, threshold) | {
        "val_flag_rate": float(np.mean(scores["val"] > threshold))
    }
    log.info("OOD threshold %.3f; %s", threshold, metrics)
    return {
        "method": "mahalanobis",
        "threshold": threshold,
        "fitted_on": "train",
        "threshold_on": "val",
        "metrics": metrics,
    }


def evaluate_keras(
    model: keras.Model,
    dataset: Dataset,
    config: TrainConfig,
    run_dir: Path,
    report_dir: Path | None = None,
    threshold: float | None = None,
    temperature: float | None = None,
) -> dict:
    """evaluate() on the Keras model, the OOD guard, the embedding baselines and t-SNE; writes
    the report (default <run_dir>/report), <run_dir>/evaluation.json and <run_dir>/ood.npz."""
    probabilities = probabilities_of(
        lambda images: model.predict(images, batch_size=config.batch_size, verbose=0), dataset
    )
    evaluation = evaluate(probabilities, dataset, config, threshold, temperature)
    embed = embedding_model(model)
    splits = dataset.splits | {"train": train_subset(dataset, config)}
    embeddings = {
        name: embed.predict(split.images, batch_size=config.batch_size, verbose=0) for name, split in splits.items()
    }
    labels = {name: split.labels for name, split in splits.items()}
    evaluation["ood"] = fit_ood(
        lambda images: embed.predict(images, batch_size=config.batch_size, verbose=0),
        embeddings,
        labels,
        dataset,
        config,
        run_dir,
    )
    evaluation["report"]["ood"] = evaluation["ood"]
    tsne = None
    if config.embedding_baselines:
        evaluation["report"]["baselines"] = embedding_baselines(embeddings, labels, config, dataset.class_names)
        tsne = (embeddings["train"], embeddings["test"], config.seed)
    write_report(report_dir or run_dir / "report", evaluation["report"], dataset.class_names, tsne)
    write_json(run_dir / EVALUATION, {key: evaluation[key] for key in ("threshold", "metrics", "calibration", "ood")})
    log.info(
        "threshold %s; val %s; test %s",
        evaluation["threshold"],
        _fmt(evaluation["metrics"]["val"]),
        _fmt(evaluation["metrics"]["test"]),
    )
    return evaluation


# --- export -----------------------------------------------------------------------------


def export_checked(
    model: keras.Model,
    test: Split,
    threshold: float | None,
    config: TrainConfig,
    run_dir: Path,
    ood: Mahalanobis | None = None,
) -> tuple[onnx.ModelProto, dict]:
    """The ONNX model and its parity report; raises ParityError unless it reproduces Keras on the
    test split (probabilities, and with `ood` the class-activation maps and OOD scores too)."""
    model_proto = to_onnx(model, config.opset, ood)
    model_bytes = model_proto.SerializeToString()
    (run_dir / "model.onnx").write_bytes(model_bytes)  # kept for inspection even if the check fails
    keras_values = trust_model(model).predict(test.images, batch_size=config.batch_size, verbose=0)
    onnx_values = onnx_outputs(model_bytes, test.images)
    parity = parity_report(keras_values["probabilities"], onnx_values[OUTPUT_NAME], threshold)
    if ood is not None:
        parity |= trust_parity(keras_values, onnx_values, classifier_kernel(model), ood)
    log.info("ONNX parity %s", parity)
    check_parity(parity, config.parity_max_abs_diff)
    return model_proto, parity


def training_record(config: TrainConfig, dataset: Dataset, history: dict[str, list[float]]) -> dict:
    """The card's `training` section, without timings."""
    names = dataset.class_names
    splits = dataset.splits | {"train": train_subset(dataset, config)}
    class_weight = None if config.oversample else balanced_class_weights(splits["train"].labels, len(names))
    binary = len(names) == 2
    threshold_rule = THRESHOLD_RULE.format(min_sensitivity=config.min_sensitivity) if binary else "arg-max class"
    data = dict(dataset.source)
    if config.data_format == "medmnist":
        data["sha256"] = file_sha256(config.data_file)
    return {
        "data": data,
        "splits": {name: len(split) for name, split in splits.items()},
        "class_counts": {
            name: by_name(class_counts(split.labels, len(names)), names) for name, split in splits.items()
        },
        "imbalance": "oversampled with augmentation" if config.oversample else "class weights",
        "class_weight": None if class_weight is None else by_name(class_weight, names),
        "architecture": config.architecture,
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch(history, config.monitor),
        "seed": config.seed,
        "config": config.hyperparameters(),
        "threshold_rule": threshold_rule,
        "val_metrics_note": "val chose the threshold and the best epoch, so its metrics are optimistic",
        "onnx_opset": config.opset,
        "versions": library_versions(),
    }


def export(
    model: keras.Model, dataset: Dataset, evaluation: dict, training: dict, config: TrainConfig, run_dir: Path
) -> ModelCard:
    """Convert, check parity on test, then write model.onnx + model.json to the output and run folders."""
    metrics = dict(evaluation["metrics"])
    statistics = run_dir / OOD_STATISTICS
    ood = Mahalanobis.load(statistics) if "ood" in evaluation and statistics.is_file() else None
    model_proto, metrics["onnx_parity"] = export_checked(
        model, dataset.splits["test"], evaluation["threshold"], config, run_dir, ood
    )
    onnx_path = write_onnx(model_proto.SerializeToString(), config.output_dir)
    card = build_card(
        model_proto,
        name=MODEL_NAME,
        version=MODEL_VERSION,
        class_names=dataset.class_names,
        preprocessing=config_spec(config),
        threshold=evaluation["threshold"],
        metrics=metrics,
        training=training,
        onnx_sha256=file_sha256(onnx_path),
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        calibration=evaluation.get("calibration"),
        ood=evaluation.get("ood") if ood is not None else None,
    )
    card_path = write_card(card, config.output_dir)
    write_json(run_dir / "model.json", json.loads(card.model_dump_json()))
    log.info("wrote %s and %s", onnx_path, card_path)
    return card


# --- the whole run ----------------------------------------------------------------------


def start_run(config: TrainConfig) -> tuple[Path, Dataset]:
    """Check the config and the data (one-line errors) before anything is trained."""
    validate(config)
    keras.backend.clear_session()
    dataset = load_dataset(config)
    balanced_class_weights(dataset.splits["train"].labels, len(dataset.class_names))  # refuses an empty class
    run_dir = create_run_dir(config.runs_dir, datetime.now(UTC))
    setup_logging(run_dir)
    write_json(run_dir / "config.json", config.to_json_dict())
    log.info("run folder %s", run_dir)
    for name, split in dataset.splits.items():
        log.info(
            "%s: %d images %s",
            name,
            len(split),
            by_name(class_counts(split.labels, len(dataset.class_names)), dataset.class_names),
        )
    return run_dir, dataset


def run(config: TrainConfig) -> ModelCard:
    clock = time.monotonic()
    started = datetime.now(UTC)
    run_dir, dataset = start_run(config)
    make_deterministic(config.seed)
    model = build_model(config, len(dataset.class_names))
    model.summary(print_fn=lambda line, **_: log.info(line))
    fit_clock = time.monotonic()
    history = fit(model, dataset, config, run_dir)
    fit_seconds = time.monotonic() - fit_clock
    log.info(
        "trained %d epochs in %.0f s; best epoch %d",
        len(history["loss"]),
        fit_seconds,
        best_epoch(history, config.monitor),
    )
    evaluation = evaluate_keras(model, dataset, config, run_dir)
    training = training_record(config, dataset, history) | {
        "date": started.date().isoformat(),
        "fit_seconds": round(fit_seconds, 1),
        "wall_seconds": round(time.monotonic() - clock, 1),
    }
    write_json(run_dir / "training.json", training)
    return export(model, dataset, evaluation, training, config, run_dir)


def main(argv: list[str] | None = None) -> int:
    return run_command(run, parse_config(argv))


def run_command(command, *arguments) -> int:
    """Run a subcommand; a known problem ends it with one line naming it and exit code 1."""
    try:
        command(*arguments)
    except RUN_ERRORS as error:
        if log.handlers:  # the run has started: train.log and the console
            log.error("%s", error)
        else:
            print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        close_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
