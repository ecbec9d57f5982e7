"""A model with three labels, from the command line to the served answer: trained on three MedNIST
folders, decided by arg-max, exported with calibration, heatmaps and the OOD guard."""

import json

import keras
import numpy as np
import onnxruntime
import pytest
from training_support import MEDNIST_CLASSES

from cxr_model.answer import calibrated, classification, decide
from cxr_model.card import CARD_FILE, ONNX_FILE, ModelCard
from cxr_model.preprocessing import preprocess_bytes
from trainer.cli import main
from trainer.fit import CHECKPOINT

CLASSES = {
    "Hand": {"name": "Hand X-ray", "finding": "A hand radiograph"},
    "ChestCT": {"name": "Chest CT", "finding": "A chest CT slice"},
    "CXR": {"name": "Chest X-ray", "finding": "A chest radiograph"},
}
IMAGES_PER_CLASS = 10  # read straight from the folders, for the served-answer check


@pytest.fixture(scope="module")
def three_classes(mednist_dir, tmp_path_factory):
    """`python -m trainer train` on Hand, ChestCT and CXR: (run folder, model folder, the argv's data flags)."""
    root = tmp_path_factory.mktemp("multiclass")
    data = ["--dataset", "image-folder", "--data-dir", str(mednist_dir), "--classes", json.dumps(CLASSES)]
    argv = [
        "train", *data, "--output-dir", str(root / "repository" / "body-part" / "1"),
        "--runs-dir", str(root / "runs"), "--epochs", "1", "--max-train-samples", "300",
        "--filters", "4,8", "--batch-size", "32", "--embedding-baselines", "false", "--verbose", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (root / "runs").iterdir()
    return run_dir, root / "repository" / "body-part" / "1", data


def test_the_card_has_three_labels_their_words_and_no_positive_class(three_classes):
    _, model_dir, _ = three_classes
    card = ModelCard.read(model_dir)
    assert sorted(path.name for path in model_dir.iterdir()) == [CARD_FILE, ONNX_FILE]
    assert (card.name, card.version) == ("body-part", "1")
    assert card.labels == list(MEDNIST_CLASSES) == list(CLASSES)
    assert {label: words.model_dump() for label, words in card.classes.items()} == CLASSES
    assert card.task == "Hand X-ray vs Chest CT vs Chest X-ray"
    assert card.decision.positive_class is None and card.decision.threshold is None
    assert card.training["threshold_rule"] == "arg-max class"
    train_counts = card.training["class_counts"]["train"]
    assert list(train_counts) == list(CLASSES) and sum(train_counts.values()) == 300 == card.training["splits"]["train"]
    assert [(spec.name, spec.shape) for spec in card.outputs] == [
        ("probabilities", [-1, 3]),
        ("class_activation", [-1, 3, *card.explanation.shape]),
        ("ood_score", [-1]),
    ]
    assert card.calibration is not None and card.calibration.temperature > 0
    assert card.ood is not None and card.ood.metrics["n_in"] == card.metrics["test"]["n"]


def test_the_card_has_multiclass_metrics_and_parity(three_classes):
    _, model_dir, _ = three_classes
    card = ModelCard.read(model_dir)
    for split in ("val", "test"):
        metrics = card.metrics[split]
        assert {"accuracy", "roc_auc", "macro_f1", "macro_precision", "macro_recall", "n"} <= set(metrics)
        assert {f"recall_{label}" for label in CLASSES} <= set(metrics)
        assert all(0.0 <= value <= 1.0 for key, value in metrics.items() if key != "n")
    parity = card.metrics["onnx_parity"]
    assert parity["label_agreement"] == 1.0 and parity["max_abs_diff"] <= 1e-4
    assert parity["class_activation_max_abs_diff"] <= 1e-4 * max(1.0, parity["class_activation_max_abs"])
    assert parity["ood_score_max_rel_diff"] <= 1e-4


def test_the_served_answer_is_the_keras_models_decision(three_classes, mednist_dir):
    """The ONNX model's answer as the service builds it (cxr_model.answer.classification) names
    the label training decides from the Keras model's probabilities, with the card's words."""
    run_dir, model_dir, _ = three_classes
    card = ModelCard.read(model_dir)
    paths = [path for label in CLASSES for path in sorted((mednist_dir / label).glob("*.jpeg"))[:IMAGES_PER_CLASS]]
    images = np.stack([preprocess_bytes(path.read_bytes(), card.preprocessing) for path in paths])
    keras_probabilities = keras.saving.load_model(run_dir / CHECKPOINT).predict(images, verbose=0)
    session = onnxruntime.InferenceSession(str(model_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in card.outputs]
    onnx_outputs = dict(zip(names, session.run(names, {"image": images}), strict=True))
    for row, keras_row in enumerate(calibrated(card, keras_probabilities)):
        answer = classification(card, {name: values[row] for name, values in onnx_outputs.items()})
        assert answer.label == decide(card, dict(zip(card.labels, keras_row.tolist(), strict=True)))
        assert answer.positive_class is None and answer.threshold is None
        assert answer.describe(answer.label).finding == CLASSES[answer.label]["finding"]
        assert answer.explanation is not None and answer.explanation.class_ == answer.label
        assert answer.ood is not None


def test_the_exported_model_evaluates_to_its_card_metrics(three_classes, tmp_path):
    _, model_dir, data = three_classes
    assert main(["evaluate", "--model-dir", str(model_dir), "--report-dir", str(tmp_path), *data]) == 0
    card = ModelCard.read(model_dir)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["labels"] == card.labels and report["decision"] == card.decision.model_dump()
    assert report["test"]["metrics"]["macro_f1"] == pytest.approx(card.metrics["test"]["macro_f1"], abs=1e-6)
    assert report["test"]["metrics"]["recall"] == pytest.approx(
        {label: card.metrics["test"][f"recall_{label}"] for label in CLASSES}, abs=1e-6
    )
    markdown = (tmp_path / "report.md").read_text()
    assert "Decision: arg-max class" in markdown and "| CXR |" in markdown
