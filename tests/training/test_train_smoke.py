"""End to end on a small subset: train, evaluate, export, parity check, card."""

import json

import numpy as np
import onnxruntime
import pytest

from cxr_model.card import CARD_FILE, ONNX_FILE, ModelCard, file_sha256
from trainer.cli import main
from trainer.config import TrainConfig
from trainer.data import NpzDataSet
from trainer.pipeline import train

SMALL = {"epochs": 2, "max_train_samples": 400, "filters": (8, 16), "batch_size": 32}


@pytest.fixture(scope="module")
def smoke_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    config = TrainConfig(data_dir=data_dir, output_dir=root / "pneumonia-xray" / "2", runs_dir=root / "runs", **SMALL)
    return config, train(config)


def test_smoke_run_writes_a_valid_card_for_its_onnx_model(smoke_run):
    config, card = smoke_run
    assert ModelCard.read(config.output_dir) == card
    assert card.onnx_sha256 == file_sha256(config.output_dir / ONNX_FILE)
    assert (card.name, card.version, card.labels) == ("pneumonia-xray", "2", ["normal", "pneumonia"])
    pneumoniamnist = NpzDataSet.read("pneumoniamnist")
    assert (card.classes, card.task) == (pneumoniamnist.classes, pneumoniamnist.task)
    assert card.decision.positive_class == "pneumonia"
    assert card.training["data"]["sha256"] and card.training["threshold_rule"].startswith("p(pneumonia) >= ")
    assert 0.0 < card.decision.threshold < 1.0
    assert card.training["splits"] == {"train": 400, "val": 524, "test": 624}
    assert card.training["epochs_run"] == 2
    assert card.training["config"]["filters"] == [8, 16]
    assert card.created_at.endswith("Z")


def test_smoke_run_reports_metrics_and_passes_parity(smoke_run):
    _, card = smoke_run
    for split, count in (("test", 624), ("val", 524)):
        metrics = card.metrics[split]
        assert set(metrics) == {"accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1", "n"}
        assert metrics["n"] == count
        assert all(0.0 <= value <= 1.0 for key, value in metrics.items() if key != "n")
    # The threshold rule keeps val sensitivity at the configured floor.
    assert card.metrics["val"]["sensitivity"] >= TrainConfig().min_sensitivity
    parity = card.metrics["onnx_parity"]
    assert parity["n"] == 624 and parity["label_agreement"] == 1.0
    assert parity["max_abs_diff"] <= 1e-4


def test_smoke_run_onnx_model_serves_the_card_tensors(smoke_run):
    config, card = smoke_run
    session = onnxruntime.InferenceSession(str(config.output_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == [spec.name for spec in card.inputs]
    assert [item.name for item in session.get_outputs()] == [spec.name for spec in card.outputs]
    probabilities, heatmaps, ood_scores = session.run(None, {"image": np.full((3, 28, 28, 1), 128.0, dtype=np.float32)})
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert heatmaps.shape == (3, 2, *card.explanation.shape) and ood_scores.shape == (3,)


def test_smoke_run_card_describes_calibration_explanation_and_ood(smoke_run):
    _, card = smoke_run
    assert card.calibration.fitted_on == "val" and card.calibration.temperature > 0
    assert set(card.calibration.ece) == {"val", "test"}
    assert all(0.0 <= value <= 1.0 for split in card.calibration.ece.values() for value in split.values())
    # two blocks, the last without its max-pool: 28 px -> 14 x 14 maps
    assert (card.explanation.output, card.explanation.shape, card.explanation.region) == (
        "class_activation",
        [14, 14],
        "center_square",
    )
    assert card.ood.output == "ood_score" and card.ood.threshold > 0
    assert card.ood.metrics["n_in"] == 624 and 0.0 <= card.ood.metrics["auroc"] <= 1.0
    parity = card.metrics["onnx_parity"]
    assert parity["class_activation_max_abs_diff"] <= 1e-4 * max(1.0, parity["class_activation_max_abs"])
    assert parity["ood_score_max_rel_diff"] <= 1e-4


def test_smoke_run_keeps_a_run_record(smoke_run):
    config, _ = smoke_run
    (run_dir,) = config.runs_dir.iterdir()
    names = {path.name for path in run_dir.iterdir()}
    expected = {"config.json", "history.csv", "history.json", "train.log", "best.keras", "model.onnx", CARD_FILE}
    assert expected | {"ood.npz", "evaluation.json", "training.json", "report"} <= names
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 2 and "val_auc" in history
    assert json.loads((run_dir / "config.json").read_text())["max_train_samples"] == 400
    assert "ONNX parity" in (run_dir / "train.log").read_text()


def test_failed_parity_exits_non_zero_and_writes_no_model(data_dir, tmp_path, caplog):
    output_dir = tmp_path / "model" / "1"
    argv = [
        "train", "--data-dir", str(data_dir), "--output-dir", str(output_dir), "--runs-dir", str(tmp_path / "runs"),
        "--epochs", "1", "--max-train-samples", "64", "--filters", "4", "--embedding-baselines", "false",
        "--parity-max-abs-diff", "-1",  # no model can meet this
    ]  # fmt: skip
    assert main(argv) == 1
    assert "ONNX output differs from Keras" in caplog.text
    assert not output_dir.exists()


def test_missing_data_exits_non_zero(tmp_path, capsys):
    argv = ["train", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out" / "1")]
    argv += ["--runs-dir", str(tmp_path / "runs")]
    assert main(argv) == 1
    assert "CXR_DATA_DIR" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
