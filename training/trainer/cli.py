"""`python -m trainer train|evaluate|export`: one entry point, one subcommand per stage.

train     train, evaluate and export (the whole run; flags = the config dataclass fields)
evaluate  re-evaluate a run's Keras model (--run-dir), or an exported model folder's
          ONNX model with its card's threshold (--model-dir), into a report folder
export    convert a run's Keras model to ONNX, check parity, write model.onnx + model.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import keras
from inference.card import CARD_FILE, ONNX_FILE, ModelCard

from trainer.config import REPO_ROOT, ConfigError, TrainConfig, add_config_flags, config_from_arguments, validate
from trainer.data import config_spec, load_dataset
from trainer.export import onnx_outputs, onnx_probabilities
from trainer.report import write_report
from trainer.trust import ood_metrics, out_of_distribution_images
from trainer.train import (
    CHECKPOINT,
    EVALUATION,
    evaluate,
    evaluate_keras,
    export,
    probabilities_of,
    run,
    run_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", allow_abbrev=False, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_config_flags(commands.add_parser("train", allow_abbrev=False, help="train, evaluate and export"))
    evaluate_parser = commands.add_parser("evaluate", allow_abbrev=False, help="write an evaluation report")
    source = evaluate_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="a run folder: re-evaluates its best.keras")
    source.add_argument("--model-dir", type=Path, help="a model folder: evaluates model.onnx with its card")
    evaluate_parser.add_argument(
        "--report-dir", type=Path, help="default: <run-dir>/report or training/reports/<model>-<version>"
    )
    add_config_flags(evaluate_parser)  # the data for --model-dir; a run uses its own config.json
    export_parser = commands.add_parser("export", allow_abbrev=False, help="export a run's model to ONNX")
    export_parser.add_argument("--run-dir", type=Path, required=True)
    export_parser.add_argument(
        "--to", type=Path, dest="export_to", help="model folder (default: the run's --output-dir)"
    )
    return parser


def run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"not a run folder (no config.json): {run_dir}")
    return TrainConfig.from_json_dict(json.loads(path.read_text()))


def load_run_model(run_dir: Path) -> keras.Model:
    return keras.saving.load_model(run_dir / CHECKPOINT)


def evaluate_run(run_dir: Path, report_dir: Path | None) -> None:
    """At the threshold the run exported (model.json), else one chosen on val again."""
    config = run_config(run_dir)
    card = ModelCard.read(run_dir) if (run_dir / CARD_FILE).is_file() else None
    threshold = card.decision.threshold if card else None
    temperature = card.calibration.temperature if card and card.calibration else None
    model = load_run_model(run_dir)
    evaluate_keras(model, load_dataset(config), config, run_dir, report_dir, threshold, temperature)


def evaluate_model_folder(model_dir: Path, report_dir: Path | None, config: TrainConfig) -> None:
    """The exported ONNX model, its card's threshold, the data named by the config flags."""
    validate(config)
    card = ModelCard.read(model_dir)
    if card.preprocessing != config_spec(config):
        raise ConfigError(f"the config's preprocessing differs from the card's: {card.preprocessing}")
    dataset = load_dataset(config)
    model_bytes = (model_dir / ONNX_FILE).read_bytes()
    probabilities = probabilities_of(lambda images: onnx_probabilities(model_bytes, images), dataset)
    temperature = card.calibration.temperature if card.calibration else 1.0
    evaluation = evaluate(probabilities, dataset, config, card.decision.threshold, temperature)
    if card.ood is not None:
        evaluation["report"]["ood"] = onnx_ood_evaluation(model_bytes, card, dataset, config)
    evaluation["report"]["title"] = (
        f"{card.name} v{card.version} (ONNX) on {dataset.source.get('file', config.data_format)}"
    )
    # Not inside the model folder: the repository copies model folders file by file.
    default_dir = REPO_ROOT / "training" / "reports" / f"{card.name}-{card.version}"
    write_report(report_dir or default_dir, evaluation["report"], dataset.class_names)


def onnx_ood_evaluation(model_bytes: bytes, card: ModelCard, dataset, config: TrainConfig) -> dict:
    """The OOD guard as served: the graph's scores and the card's threshold, test vs OOD images."""
    test = dataset.splits["test"].images
    out_images = out_of_distribution_images(card.preprocessing, config.data_dir, test, config.seed)

    def scores(images):
        return onnx_outputs(model_bytes, images, [card.ood.output])[card.ood.output]

    out_scores = {kind: scores(images) for kind, images in out_images.items()}
    return card.ood.model_dump(exclude={"metrics"}) | {
        "metrics": ood_metrics(scores(test), out_scores, card.ood.threshold)
    }


def export_run(run_dir: Path, export_to: Path | None) -> None:
    config = run_config(run_dir)
    if export_to is not None:
        config = replace(config, output_dir=export_to)
    evaluation = json.loads((run_dir / EVALUATION).read_text())
    training = json.loads((run_dir / "training.json").read_text())
    export(load_run_model(run_dir), load_dataset(config), evaluation, training, config, run_dir)


def main(argv: list[str] | None = None) -> int:
    arguments = vars(build_parser().parse_args(argv))
    command = arguments.pop("command")
    if command == "train":
        return run_command(run, config_from_arguments(arguments))
    if command == "export":
        return run_command(export_run, arguments["run_dir"], arguments["export_to"])
    if arguments["run_dir"] is not None:
        return run_command(evaluate_run, arguments["run_dir"], arguments["report_dir"])
    return run_command(
        evaluate_model_folder, arguments["model_dir"], arguments["report_dir"], config_from_arguments(arguments)
    )


if __name__ == "__main__":
    sys.exit(main())
