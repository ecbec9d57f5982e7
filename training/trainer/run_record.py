"""A run's folder, `<runs-dir>/<UTC timestamp>/`: what each stage leaves there, read back by
`evaluate --run-dir` and `export --run-dir`.

config.json, train.log, history.csv (Keras, per epoch) and history.json, best.keras (the
checkpoint: the trained model), ood.npz (the OOD statistics), evaluation.json, training.json,
report/, and the candidate model.onnx + model.json.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path

import keras

from cxr_model.card import CARD_FILE, ModelCard
from trainer.config import ConfigError, TrainConfig
from trainer.data import Dataset
from trainer.evaluate import Evaluation
from trainer.fit import CHECKPOINT, FitResult, TrainingRecord, training_subset
from trainer.model import embedding_model
from trainer.trust import Mahalanobis

log = logging.getLogger("trainer")
CONFIG = "config.json"
HISTORY = "history.json"
OOD_STATISTICS = "ood.npz"
EVALUATION = "evaluation.json"
TRAINING = "training.json"
REPORT = "report"
LOG = "train.log"


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


def start_run(config: TrainConfig, started: datetime) -> Path:
    """The run's folder, with its config.json, logging to its train.log and the console."""
    run_dir = create_run_dir(config.runs_dir, started)
    start_logging(run_dir)
    write_json(run_dir / CONFIG, config.to_json_dict())
    log.info("run folder %s", run_dir)
    return run_dir


def start_logging(run_dir: Path) -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    stop_logging()
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / LOG)):
        handler.setFormatter(formatter)
        log.addHandler(handler)


def stop_logging() -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def save_fit(run_dir: Path, fitted: FitResult) -> None:
    """history.json and ood.npz (the checkpoint callback has written best.keras)."""
    write_json(run_dir / HISTORY, fitted.history)
    fitted.ood.save(run_dir / OOD_STATISTICS)


def save_evaluation(run_dir: Path, evaluation: Evaluation) -> None:
    (run_dir / EVALUATION).write_text(evaluation.model_dump_json(indent=2) + "\n")


def save_training(run_dir: Path, training: TrainingRecord) -> None:
    (run_dir / TRAINING).write_text(training.model_dump_json(indent=2) + "\n")


def read_config(run_dir: Path) -> TrainConfig:
    path = run_dir / CONFIG
    if not path.is_file():
        raise ConfigError(f"not a run folder (no {CONFIG}): {run_dir}")
    return TrainConfig.from_json_dict(json.loads(path.read_text()))


def read_fit(run_dir: Path, dataset: Dataset, config: TrainConfig) -> FitResult:
    """The fitted model as the run left it (fit_seconds from training.json when there)."""
    for name in (CHECKPOINT, HISTORY, OOD_STATISTICS):
        if not (run_dir / name).is_file():
            raise ConfigError(f"the run folder has no {name} (its fit did not finish): {run_dir}")
    training = run_dir / TRAINING
    model = keras.saving.load_model(run_dir / CHECKPOINT)
    return FitResult(
        model=model,
        embedding=embedding_model(model),
        history=json.loads((run_dir / HISTORY).read_text()),
        train=training_subset(dataset.train, config),
        ood=Mahalanobis.load(run_dir / OOD_STATISTICS),
        fit_seconds=read_training(run_dir).fit_seconds if training.is_file() else 0.0,
    )


def read_evaluation(run_dir: Path) -> Evaluation:
    return Evaluation.model_validate_json((run_dir / EVALUATION).read_text())


def read_training(run_dir: Path) -> TrainingRecord:
    return TrainingRecord.model_validate_json((run_dir / TRAINING).read_text())


def read_card(run_dir: Path) -> ModelCard | None:
    """The card the run exported, if it got that far."""
    return ModelCard.read(run_dir) if (run_dir / CARD_FILE).is_file() else None
