"""`python -m trainer train|evaluate|export`: the command line of the training pipeline.

train     data, fit, evaluate, export (one flag per TrainConfig field)
evaluate  re-evaluate a run's Keras model (--run-dir), or an exported model folder's ONNX
          model with its card's choices (--model-dir; the data from the config flags)
export    convert a run's Keras model to ONNX, check parity, write model.onnx + model.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from trainer.config import ClassWords, ConfigError, TrainConfig, field_types, read_classes
from trainer.data import DataError, DataNotFoundError
from trainer.parity import ParityError
from trainer.pipeline import evaluate_model_dir, evaluate_run, export_run, train
from trainer.run_record import log, stop_logging

RUN_ERRORS = (ConfigError, DataError, DataNotFoundError, ParityError)
COMMANDS = ("train", "evaluate", "export")


def main(argv: list[str] | None = None) -> int:
    arguments = vars(build_parser().parse_args(argv))
    try:
        run(arguments)
    except RUN_ERRORS as error:
        if log.handlers:  # the run has started: train.log and the console
            log.error("%s", error)
        else:
            print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        stop_logging()
    return 0


def run(arguments: dict[str, Any]) -> None:
    command = arguments["command"]
    if command == "train":
        train(config_from_arguments(arguments))
    elif command == "export":
        export_run(arguments["run_dir"], arguments["export_to"])
    elif arguments["run_dir"] is not None:
        evaluate_run(arguments["run_dir"], arguments["report_dir"])
    else:
        evaluate_model_dir(
            arguments["model_dir"], arguments["report_dir"], config_from_arguments(arguments), arguments["update_card"]
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", allow_abbrev=False, description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    add_config_flags(commands.add_parser("train", allow_abbrev=False, help="train, evaluate and export"))
    evaluate = commands.add_parser("evaluate", allow_abbrev=False, help="write an evaluation report")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="a run folder: re-evaluates its best.keras")
    source.add_argument("--model-dir", type=Path, help="a model folder: evaluates model.onnx with its card")
    evaluate.add_argument(
        "--report-dir", type=Path, help="default: <run-dir>/report or training/reports/<name>-<version>"
    )
    evaluate.add_argument(
        "--update-card", action="store_true", help="with --model-dir: write the card's metrics_ci from this evaluation"
    )
    add_config_flags(evaluate)  # the data for --model-dir; a run uses its own config.json
    export = commands.add_parser("export", allow_abbrev=False, help="export a run's model to ONNX")
    export.add_argument("--run-dir", type=Path, required=True)
    export.add_argument("--to", type=Path, dest="export_to", help="<repository>/<name>/<version> (default: the run's)")
    return parser


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per config field; a flag left out keeps the dataclass default."""
    defaults = TrainConfig()
    for item in fields(TrainConfig):
        default = getattr(defaults, item.name)
        parser.add_argument("--" + item.name.replace("_", "-"), type=flag_parser(item.name), help=f"default {default}")


def flag_parser(name: str) -> Callable[[str], Any]:
    """How the text of a flag becomes the field's value (classes: read in config_from_arguments)."""
    hint = field_types()[name]
    parsers: dict[Any, Callable[[str], Any]] = {
        Path: Path,
        Path | None: Path,
        int | None: int,
        tuple[int, ...]: comma_separated(int),
        tuple[float, ...]: comma_separated(float),
        bool: boolean,
        ClassWords: str,
    }
    return parsers.get(hint, hint)


def comma_separated(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    return lambda text: tuple(kind(part.strip()) for part in text.split(",") if part.strip())


def boolean(text: str) -> bool:
    values = {"true": True, "1": True, "false": False, "0": False}
    if text.lower() not in values:
        raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (true or false)")
    return values[text.lower()]


def config_from_arguments(arguments: dict[str, Any]) -> TrainConfig:
    known = {item.name for item in fields(TrainConfig)}
    overrides = {name: value for name, value in arguments.items() if name in known and value is not None}
    if "classes" in overrides:
        overrides["classes"] = read_classes(overrides["classes"])
    return replace(TrainConfig(), **overrides)


def train_config(argv: list[str]) -> TrainConfig:
    """The config `python -m trainer train ARGV` trains with."""
    return config_from_arguments(vars(build_parser().parse_args(["train", *argv])))


if __name__ == "__main__":
    sys.exit(main())
