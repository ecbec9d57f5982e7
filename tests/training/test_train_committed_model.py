"""The committed models/pneumonia-xray/2 is what its card says it is, and meets the shipped targets."""

import numpy as np
import onnxruntime
import pytest

from cxr_model.answer import calibrated
from cxr_model.card import CARD_FILE, ONNX_FILE, ModelCard, file_sha256
from cxr_model.preprocessing import preprocess_bytes
from trainer.data import NpzDataSet, load_splits, preprocessing_spec
from trainer.export import onnx_embeddings, onnx_outputs
from trainer.metrics import binary_metrics, evaluate_split, expected_calibration_error


@pytest.fixture(scope="module")
def card(committed_model_dir) -> ModelCard:
    assert (committed_model_dir / CARD_FILE).is_file(), "run `bash scripts/train.sh` to produce the committed model"
    return ModelCard.read(committed_model_dir)


@pytest.fixture(scope="module")
def session(committed_model_dir) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(committed_model_dir / ONNX_FILE), providers=["CPUExecutionProvider"])


def test_card_hash_matches_the_committed_onnx_file(card, committed_model_dir):
    assert card.onnx_sha256 == file_sha256(committed_model_dir / ONNX_FILE)


def test_card_describes_the_contract(card, committed_model_dir):
    assert (card.name, card.version) == (committed_model_dir.parent.name, committed_model_dir.name)
    assert card.labels == ["normal", "pneumonia"]
    assert [(spec.name, spec.datatype, spec.shape) for spec in card.inputs] == [("image", "FP32", [-1, 28, 28, 1])]
    assert [(spec.name, spec.datatype, spec.shape) for spec in card.outputs] == [
        ("probabilities", "FP32", [-1, 2]),
        ("class_activation", "FP32", [-1, 2, *card.explanation.shape]),
        ("ood_score", "FP32", [-1]),
    ]
    assert card.preprocessing == preprocessing_spec(28)
    assert card.decision.positive_class == "pneumonia" and 0.0 < card.decision.threshold < 1.0
    assert card.metrics["onnx_parity"]["max_abs_diff"] <= 1e-4
    assert card.metrics["onnx_parity"]["label_agreement"] == 1.0
    assert card.metrics["onnx_parity"]["n"] == 624
    assert card.training["splits"] == {"train": 4708, "val": 524, "test": 624}
    assert card.created_at.endswith("Z")


def test_the_card_words_are_those_training_writes(card):
    """A model retrained by `bash scripts/train.sh` gets the same labels, words and task."""
    pneumoniamnist = NpzDataSet.read("pneumoniamnist")
    assert card.labels == list(pneumoniamnist.classes)
    assert card.classes == pneumoniamnist.classes
    assert card.task == pneumoniamnist.task


def test_onnx_graph_matches_the_card(card, session):
    expected_inputs = [(spec.name, "tensor(float)") for spec in card.inputs]
    assert [(item.name, item.type) for item in session.get_inputs()] == expected_inputs
    assert [item.name for item in session.get_outputs()] == [spec.name for spec in card.outputs]
    assert session.get_inputs()[0].shape[1:] == card.inputs[0].shape[1:]


@pytest.fixture(scope="module")
def test_outputs(card, session, data_file) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The test split's labels and the ONNX model's outputs on it."""
    assert card.training["data"]["sha256"] == file_sha256(data_file)
    test = load_splits(data_file, card.preprocessing)["test"]
    names = [spec.name for spec in card.outputs]
    return test.label_ids, dict(zip(names, session.run(names, {"image": test.images}), strict=True))


def test_card_test_metrics_reproduce_from_the_onnx_model(card, test_outputs):
    labels, outputs = test_outputs
    served = calibrated(card, outputs["probabilities"])
    recomputed = binary_metrics(labels, served[:, 1], card.decision.threshold)
    assert recomputed.for_card() == pytest.approx(card.metrics["test"], abs=1e-6)
    # decided by cxr_model.answer.decide, as the server decides: the same figures
    assert evaluate_split(card, labels, served).metrics == recomputed
    assert expected_calibration_error(labels, outputs["probabilities"]) == pytest.approx(
        card.calibration.ece["test"]["before"], abs=1e-6
    )
    after = card.calibration.ece["test"]["after"]
    assert expected_calibration_error(labels, served) == pytest.approx(after, abs=1e-6)


def test_card_ood_figures_reproduce_from_the_onnx_model(card, test_outputs):
    labels, outputs = test_outputs
    flagged = outputs[card.ood.output] > card.ood.threshold
    assert float(np.mean(flagged)) == pytest.approx(card.ood.metrics["test_false_flag_rate"], abs=1e-9)
    assert card.ood.metrics["n_in"] == len(labels) == 624


def test_the_committed_model_meets_the_shipped_targets(card, committed_model_dir):
    """Issue #3 and #9's targets on the test split, at the shipped threshold, after calibration."""
    test = card.metrics["test"]
    assert test["roc_auc"] >= 0.975 and test["accuracy"] >= 0.90
    assert test["sensitivity"] >= 0.95 and test["specificity"] >= 0.80
    assert card.calibration.fitted_on == "val" and card.calibration.ece["test"]["after"] <= 0.05
    assert card.ood.metrics["auroc"] >= 0.95 and card.ood.metrics["test_false_flag_rate"] <= 0.05
    assert card.ood.metrics["n_out"] >= 100
    assert (committed_model_dir / ONNX_FILE).stat().st_size <= 10 * 1024 * 1024
    assert card.training["fit_seconds"] <= 20 * 60


def test_the_card_records_heatmap_and_ood_parity_on_the_test_split(card):
    parity = card.metrics["onnx_parity"]
    assert parity["n"] == 624
    assert parity["class_activation_max_abs_diff"] <= 1e-4 * parity["class_activation_max_abs"]
    assert parity["ood_score_max_rel_diff"] <= 1e-4
    explanation = card.explanation
    assert (explanation.method, explanation.layout, explanation.region) == ("CAM", "NCHW", "center_square")


def test_a_real_jpeg_upload_gets_probabilities(card, session, data_dir):
    upload = sorted((data_dir / "samples" / "pneumonia").glob("*.jpeg")) + sorted(
        (data_dir / "samples" / "pneumonia").glob("*.jpg")
    )
    if not upload:
        pytest.skip(f"no sample JPEGs under {data_dir / 'samples' / 'pneumonia'}")
    image = preprocess_bytes(upload[0].read_bytes(), card.preprocessing)
    assert image.shape == (28, 28, 1)
    probabilities, heatmaps, ood_score = session.run(None, {"image": image[None]})
    assert probabilities.shape == (1, 2)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
    assert heatmaps.shape == (1, 2, *card.explanation.shape)
    assert ood_score[0] <= card.ood.threshold  # a real chest X-ray is not flagged


def test_the_embedding_read_inside_the_graph_is_what_the_classifier_sees(committed_model_dir, card):
    """The heatmaps are the feature maps weighted by the classifier's kernel, so their spatial mean is
    linear in the embedding (the feature maps' global average): a least-squares fit from the
    embeddings the report's t-SNE reads (`onnx_embeddings`) to those means leaves no residual."""
    model_bytes = (committed_model_dir / ONNX_FILE).read_bytes()
    images = np.random.default_rng(0).uniform(0, 255, (200, 28, 28, 1)).astype(np.float32)
    embeddings = onnx_embeddings(model_bytes, images)
    assert embeddings is not None and embeddings.shape[0] == 200 and embeddings.shape[1] < 200
    heatmap_means = onnx_outputs(model_bytes, images, [card.explanation.output])[card.explanation.output].mean(
        axis=(2, 3)
    )
    kernel, *_ = np.linalg.lstsq(embeddings, heatmap_means, rcond=None)
    assert np.abs(embeddings @ kernel - heatmap_means).max() <= 1e-4 * np.abs(heatmap_means).max()
    shuffled = np.random.default_rng(1).permutation(embeddings)  # other images' embeddings do not fit
    kernel, *_ = np.linalg.lstsq(shuffled, heatmap_means, rcond=None)
    assert np.abs(shuffled @ kernel - heatmap_means).max() > 1e-2 * np.abs(heatmap_means).max()
