"""The committed models/pneumonia-xray/1 is what its card says it is."""

import numpy as np
import onnxruntime
import pytest
from inference.card import CARD_FILE, ONNX_FILE, ModelCard, file_sha256
from inference.preprocessing import preprocess_bytes
from trainer.data import load_splits, preprocessing_spec
from trainer.evaluate import binary_metrics


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
    assert [(spec.name, spec.datatype, spec.shape) for spec in card.outputs] == [("probabilities", "FP32", [-1, 2])]
    assert card.preprocessing == preprocessing_spec(28)
    assert card.decision.positive_class == "pneumonia" and 0.0 < card.decision.threshold < 1.0
    assert card.metrics["onnx_parity"]["max_abs_diff"] <= 1e-4
    assert card.metrics["onnx_parity"]["label_agreement"] == 1.0
    assert card.metrics["onnx_parity"]["n"] == 624
    assert card.training["splits"] == {"train": 4708, "val": 524, "test": 624}
    assert card.created_at.endswith("Z")


def test_onnx_graph_matches_the_card(card, session):
    expected_inputs = [(spec.name, "tensor(float)") for spec in card.inputs]
    assert [(item.name, item.type) for item in session.get_inputs()] == expected_inputs
    assert [item.name for item in session.get_outputs()] == [spec.name for spec in card.outputs]
    assert session.get_inputs()[0].shape[1:] == card.inputs[0].shape[1:]


def test_card_test_metrics_reproduce_from_the_onnx_model(card, session, data_file):
    assert card.training["data"]["sha256"] == file_sha256(data_file)
    test = load_splits(data_file, card.preprocessing)["test"]
    (probabilities,) = session.run(["probabilities"], {"image": test.images})
    recomputed = binary_metrics(test.labels, probabilities[:, 1], card.decision.threshold)
    assert recomputed == pytest.approx(card.metrics["test"], abs=1e-6)


def test_a_real_jpeg_upload_gets_probabilities(card, session, data_dir):
    upload = sorted((data_dir / "samples" / "pneumonia").glob("*.jpeg")) + sorted(
        (data_dir / "samples" / "pneumonia").glob("*.jpg")
    )
    if not upload:
        pytest.skip(f"no sample JPEGs under {data_dir / 'samples' / 'pneumonia'}")
    image = preprocess_bytes(upload[0].read_bytes(), card.preprocessing)
    assert image.shape == (28, 28, 1)
    (probabilities,) = session.run(["probabilities"], {"image": image[None]})
    assert probabilities.shape == (1, 2)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
