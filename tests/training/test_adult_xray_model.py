"""The adult chest X-ray model: the committed ONNX file re-measured on its documented test split, and
a short run of its whole pipeline (label file, source-balanced training, equalised preprocessing,
export).

The split is rebuilt as training made it: `training/prepare_adult_cxr.py` writes the label file
again (patient-grouped, seeded) and the card's own training config reads it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.metrics import roc_auc_score

from cxr_model.answer import calibrated
from cxr_model.card import ONNX_FILE, ModelCard
from trainer.config import REPO_ROOT, TrainConfig, default_data_dir
from trainer.data import load_dataset
from trainer.decision import decided_label_ids
from trainer.metrics import expected_calibration_error
from trainer.pipeline import train
from trainer.run_record import REPORT

MODEL_DIR = REPO_ROOT / "models" / "pneumonia-xray-adult" / "1"
ADULT_CXR = default_data_dir() / "adult-cxr"


@pytest.fixture(scope="module")
def prepare() -> ModuleType:
    if not (ADULT_CXR / "ieee8023" / "metadata.csv").is_file():
        pytest.skip(f"the adult chest X-rays are not at {ADULT_CXR}: see training/README.md to get them")
    spec = importlib.util.spec_from_file_location("prepare_adult_cxr", REPO_ROOT / "training" / "prepare_adult_cxr.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_label_file(prepare: ModuleType, path: Path, held_out: tuple[str, ...] = ()) -> Path:
    rows = prepare.label_rows(ADULT_CXR, held_out)
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=prepare.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.read(MODEL_DIR)


@pytest.fixture(scope="module")
def test_split(card, prepare, tmp_path_factory):
    labels_csv = write_label_file(prepare, tmp_path_factory.mktemp("adult") / "labels.csv")
    config = replace(TrainConfig.from_json_dict(card.training["config"]), data_dir=ADULT_CXR, labels_csv=labels_csv)
    dataset = load_dataset(config)
    assert dataset.labels == tuple(card.labels)
    return dataset.test


@pytest.fixture(scope="module")
def served(card, test_split) -> np.ndarray:
    """The calibrated probabilities the ONNX model gives the test images, as the server gives them."""
    session = ort.InferenceSession(str(MODEL_DIR / ONNX_FILE), providers=["CPUExecutionProvider"])
    images = test_split.images
    raw = np.concatenate(
        [
            session.run([card.outputs[0].name], {card.inputs[0].name: images[i : i + 128]})[0]
            for i in range(0, len(images), 128)
        ]
    )
    return calibrated(card, raw)


def test_the_card_states_what_the_onnx_model_scores_on_its_test_split(card, test_split, served):
    truth, decided = test_split.label_ids, decided_label_ids(card, served)
    positive, negative = truth == 1, truth == 0
    test = card.metrics["test"]
    assert test["n"] == len(truth)
    assert test["accuracy"] == pytest.approx(float(np.mean(decided == truth)), abs=1e-6)
    assert test["sensitivity"] == pytest.approx(float(np.mean(decided[positive] == 1)), abs=1e-6)
    assert test["specificity"] == pytest.approx(float(np.mean(decided[negative] == 0)), abs=1e-6)
    assert test["roc_auc"] == pytest.approx(float(roc_auc_score(truth, served[:, 1])), abs=1e-6)
    assert card.metrics["calibration"]["test_ece"] == pytest.approx(expected_calibration_error(truth, served), abs=1e-6)
    for name, value in test.items():
        if name != "n":
            low, high = card.metrics_ci["test"][name]
            assert low <= value <= high, name


def test_the_card_says_whom_the_model_is_for_and_how_images_are_prepared(card):
    assert card.intended_use is not None and card.intended_use.image_kind == "chest_xray"
    population = card.intended_use.population
    assert population.min_age_years == 18 and population.max_age_years is None
    assert card.preprocessing.equalize == "histogram"
    assert card.training["config"]["balance_sources"] is True
    held_out = [name for name in card.metrics if name.startswith("held_out_")]
    assert held_out, "the leave-one-source-out figures are in the card"
    assert any("never saw" in limit for limit in card.intended_use.known_limits)


def test_a_short_run_of_the_adult_pipeline_trains_and_exports_a_source_balanced_model(prepare, tmp_path):
    """A few hundred images, one epoch: the label file with its sources, equalised preprocessing and
    source-balanced weights get through training, evaluation and ONNX export."""
    labels_csv = write_label_file(prepare, tmp_path / "labels.csv", held_out=("ieee8023",))
    config = TrainConfig(
        dataset="image-csv",
        data_dir=ADULT_CXR,
        labels_csv=labels_csv,
        output_dir=tmp_path / "repository" / "pneumonia-xray-adult" / "1",
        runs_dir=tmp_path / "runs",
        image_size=48,
        equalize="histogram",
        balance_sources=True,
        filters=(8, 16),
        epochs=1,
        batch_size=32,
        max_train_samples=300,
        embedding_baselines=False,
        verbose=0,
    )
    card = train(config)
    assert card.preprocessing.equalize == "histogram"
    assert card.training["splits"] == {"train": 300, "val": 383, "test": 505}
    assert card.training["imbalance"].startswith("image weights balancing the sources")
    assert card.metrics["onnx_parity"]["label_agreement"] == 1.0
    assert set(card.metrics_ci["test"]) >= {"roc_auc", "sensitivity", "specificity"}
    (run_dir,) = config.runs_dir.iterdir()
    ood = json.loads((run_dir / REPORT / "report.json").read_text())["ood"]["metrics"]
    assert set(ood["test_flag_rate_by_source"]) == {"ieee8023"}  # the held-out source is the whole test split
    assert ood["test_flagged"] == round(ood["test_false_flag_rate"] * 505)
