"""Training as a pipeline of typed stages: data -> fit -> evaluate -> export.

    dataset    = data.load_dataset(config)                       # Dataset
    fitted     = fit.fit(dataset, config, run_dir)               # FitResult
    evaluation = evaluate.evaluate(fitted, dataset, config)      # Evaluation
    card       = export.export(fitted, dataset, evaluation, ...) # ModelCard, files written

plus the commands that run one stage again: on a run folder (`evaluate_run`, `export_run`)
or on an exported model folder (`evaluate_model_dir`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cxr_model.card import ONNX_FILE, ModelCard
from trainer import run_record
from trainer.baselines import Embedded, TsneMap, tsne_map
from trainer.config import REPO_ROOT, ConfigError, TrainConfig, validate
from trainer.data import Dataset, config_spec, load_dataset
from trainer.evaluate import Evaluation, decided_correctly, evaluate, evaluate_ood, measure, source_name
from trainer.export import export, onnx_embeddings, onnx_outputs, onnx_probabilities
from trainer.fit import FitResult, fit, fix_seeds, training_record
from trainer.gallery import GalleryImage, keras_heatmaps, onnx_heatmaps, worst_error_gallery
from trainer.report import write_report

log = logging.getLogger("trainer")


def train(config: TrainConfig) -> ModelCard:
    """The whole run; the config and the data are checked (one-line errors) before anything is trained."""
    started, clock = datetime.now(UTC), time.monotonic()
    validate(config)
    dataset = load_dataset(config)
    run_dir = run_record.start_run(config, started)
    log_splits(dataset)
    fix_seeds(config.seed)
    fitted = fit(dataset, config, run_dir)
    run_record.save_fit(run_dir, fitted)
    evaluation = evaluate(fitted, dataset, config)
    run_record.save_evaluation(run_dir, evaluation)
    write_report(run_dir / run_record.REPORT, evaluation, keras_gallery(fitted, dataset, evaluation))
    training = training_record(fitted, dataset, config, started, time.monotonic() - clock)
    run_record.save_training(run_dir, training)
    return export(fitted, dataset, evaluation, training, config, run_dir)


def log_splits(dataset: Dataset) -> None:
    for name, split in dataset.splits.items():
        log.info("%s: %d images %s", name, len(split), dataset.counts(split))


def evaluate_run(run_dir: Path, report_dir: Path | None = None) -> Evaluation:
    """A run's Keras model again, with the choices of the card it exported (else chosen on val again)."""
    config = run_record.read_config(run_dir)
    dataset = load_dataset(config)
    fitted = run_record.read_fit(run_dir, dataset, config)
    evaluation = evaluate(fitted, dataset, config, chosen=run_record.read_card(run_dir))
    write_report(report_dir or run_dir / run_record.REPORT, evaluation, keras_gallery(fitted, dataset, evaluation))
    return evaluation


def keras_gallery(fitted: FitResult, dataset: Dataset, evaluation: Evaluation) -> list[GalleryImage]:
    return worst_error_gallery(
        evaluation.test_images, dataset.test.images, dataset.labels, keras_heatmaps(fitted.model)
    )


def evaluate_model_dir(
    model_dir: Path, report_dir: Path | None, config: TrainConfig, update_card: bool = False
) -> Evaluation:
    """An exported model as served: its ONNX graph and its card's choices, on the config's data.

    The report goes to training/reports/<name>-<version> by default, not into the model
    folder: the repository copies model folders file by file. `update_card`: the card's
    confidence intervals (`metrics_ci`) are written from this evaluation."""
    validate(config)
    card = ModelCard.read(model_dir)
    if card.preprocessing != config_spec(config):
        raise ConfigError(f"the config's preprocessing differs from the card's: {card.preprocessing}")
    dataset = load_dataset(config)
    if tuple(card.labels) != dataset.labels:
        raise ConfigError(f"the model's labels {card.labels} are not the data's {list(dataset.labels)}")
    model_bytes = (model_dir / ONNX_FILE).read_bytes()
    raw = {name: onnx_probabilities(model_bytes, dataset.splits[name].images) for name in ("val", "test")}
    evaluation = measure(raw, dataset, card, config, f"{card.name} v{card.version} (ONNX) on {source_name(dataset)}")
    if card.ood is not None:
        output = card.ood.output
        ood = evaluate_ood(
            lambda images: onnx_outputs(model_bytes, images, [output])[output],
            dataset,
            config,
            card.ood.threshold,
            decided_correctly(evaluation),
        )
        evaluation = evaluation.model_copy(update={"ood": ood})
    epochs = {"history": card.training.get("history", {}), "best_epoch": card.training.get("best_epoch")}
    evaluation = evaluation.model_copy(update=epochs | {"tsne": onnx_tsne(model_bytes, dataset, config.seed)})
    gallery = worst_error_gallery(
        evaluation.test_images, dataset.test.images, dataset.labels, onnx_heatmaps(model_bytes, card)
    )
    write_report(report_dir or REPO_ROOT / "training" / "reports" / f"{card.name}-{card.version}", evaluation, gallery)
    if update_card:
        card.model_copy(update={"metrics_ci": evaluation.intervals}).write(model_dir)
    return evaluation


def onnx_tsne(model_bytes: bytes, dataset: Dataset, seed: int) -> TsneMap | None:
    """The t-SNE map of the exported graph's embeddings of train and test (None: no embedding node)."""
    mapped = {}
    for name in ("train", "test"):
        split = dataset.splits[name]
        embeddings = onnx_embeddings(model_bytes, split.images)
        if embeddings is None:
            return None
        mapped[name] = Embedded(embeddings, split.label_ids, split.sources)
    return tsne_map(mapped, dataset.labels, seed)


def export_run(run_dir: Path, export_to: Path | None = None) -> ModelCard:
    """A run's model exported again (to `export_to` instead of its output folder when given)."""
    config = run_record.read_config(run_dir)
    if export_to is not None:
        config = replace(config, output_dir=export_to)
    dataset = load_dataset(config)
    fitted = run_record.read_fit(run_dir, dataset, config)
    evaluation, training = run_record.read_evaluation(run_dir), run_record.read_training(run_dir)
    return export(fitted, dataset, evaluation, training, config, run_dir)
