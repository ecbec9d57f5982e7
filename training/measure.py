"""Measure an exported model (its ONNX file and its card's decision, as served) on the test split of
an `image-csv` layout, and write the figures into a card as one more entry of `metrics` (with its
bootstrap 95% intervals in `metrics_ci`): the per-source test figures of a model trained on several
sources, or the figures of a cross-source run kept in the card of the shipped model.

    python training/measure.py --model-dir models/covid-ct/1 --layout /tmp/ct/covid-ct --as test_covid_ct
    python training/measure.py --model-dir /tmp/ct/out/sars-to-covid-ct/1 --layout /tmp/ct/sars-to-covid-ct \\
        --as cross_source_sars_to_covid_ct --card models/covid-ct/1

`--layout` is a folder written by `training/prepare_ct.py` (its `labels.csv` has a split column);
`--card`: the model folder whose card gets the entry (default: `--model-dir` itself).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from cxr_model.answer import calibrated
from cxr_model.card import ONNX_FILE, ModelCard
from trainer.config import TrainConfig
from trainer.data import Split, load_dataset
from trainer.export import onnx_probabilities
from trainer.metrics import Interval, bootstrap_intervals, evaluate_split

LABELS_CSV = "labels.csv"


def test_split(card: ModelCard, layout: Path) -> Split:
    """The layout's test split, read with the card's own training config (preprocessing, classes)."""
    config = replace(
        TrainConfig.from_json_dict(card.training["config"]),
        dataset="image-csv",
        data_dir=layout,
        labels_csv=layout / LABELS_CSV,
        init_weights=None,
    )
    return load_dataset(config).test


def served_probabilities(model_dir: Path, card: ModelCard, images: np.ndarray) -> np.ndarray:
    """The calibrated probabilities the server answers for these images."""
    return np.asarray(calibrated(card, onnx_probabilities((model_dir / ONNX_FILE).read_bytes(), images)))


def measure(model_dir: Path, layout: Path, seed: int = 0) -> tuple[dict[str, float], dict[str, Interval]]:
    card = ModelCard.read(model_dir)
    split = test_split(card, layout)
    probabilities = served_probabilities(model_dir, card, split.images)
    evaluation = evaluate_split(card, split.label_ids, probabilities)
    metrics = evaluation.metrics.for_card() | {"ece": evaluation.ece}
    return metrics, bootstrap_intervals(card, split.label_ids, probabilities, seed)


def record(card_dir: Path, name: str, metrics: dict[str, float], intervals: dict[str, Interval]) -> ModelCard:
    card = ModelCard.read(card_dir)
    card = card.model_copy(
        update={"metrics": card.metrics | {name: metrics}, "metrics_ci": card.metrics_ci | {name: intervals}}
    )
    card.write(card_dir)
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--layout", type=Path, required=True)
    parser.add_argument("--as", dest="name", required=True, help="the name of the metrics entry, e.g. test_covid_ct")
    parser.add_argument("--card", type=Path, default=None)
    arguments = parser.parse_args()
    metrics, intervals = measure(arguments.model_dir, arguments.layout)
    record(arguments.card or arguments.model_dir, arguments.name, metrics, intervals)
    print(arguments.name, {key: round(value, 4) for key, value in metrics.items()})


if __name__ == "__main__":
    main()
