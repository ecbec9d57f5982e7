import keras
import numpy as np
import onnx
import pytest
from training_support import binary_card, card_for, words

from cxr_model.card import Decision, ModelCard, file_sha256
from trainer.config import TrainConfig
from trainer.data import preprocessing_spec
from trainer.export import build_card, onnx_probabilities, tensor_specs, to_onnx, write_card, write_onnx
from trainer.model import INPUT_NAME, OUTPUT_NAME, build_model
from trainer.parity import ParityError, check_parity, parity_report


@pytest.fixture(scope="module")
def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model(TrainConfig(filters=(4, 8)))


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model) -> onnx.ModelProto:
    return to_onnx(tiny_model, opset=17)


def raw_pixels(count: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, size=(count, 28, 28, 1)).astype(np.float32)


THRESHOLD_HALF = binary_card(0.5)


def test_onnx_graph_has_one_image_input_and_one_probabilities_output(tiny_onnx):
    inputs, outputs = tensor_specs(tiny_onnx)
    assert [(spec.name, spec.datatype, spec.shape) for spec in inputs] == [(INPUT_NAME, "FP32", [-1, 28, 28, 1])]
    assert [(spec.name, spec.datatype, spec.shape) for spec in outputs] == [(OUTPUT_NAME, "FP32", [-1, 2])]
    assert tiny_onnx.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_onnx_reproduces_keras_for_any_batch_size(tiny_model, tiny_onnx):
    model_bytes = tiny_onnx.SerializeToString()
    for count in (1, 7):
        images = raw_pixels(count)
        expected = tiny_model.predict(images, verbose=0)
        report = parity_report(THRESHOLD_HALF, expected, onnx_probabilities(model_bytes, images))
        assert report.n == count
        assert report.max_abs_diff < 1e-5
        assert report.label_agreement == 1.0
        check_parity(report, max_abs_diff=1e-4)


def test_parity_check_fails_on_large_differences():
    keras_probabilities = np.array([[0.3, 0.7], [0.9, 0.1]], dtype=np.float32)
    shifted = keras_probabilities + np.array([[1e-3, -1e-3], [0, 0]], dtype=np.float32)
    report = parity_report(THRESHOLD_HALF, keras_probabilities, shifted)
    assert report.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert report.label_agreement == 1.0
    with pytest.raises(ParityError, match="max abs diff"):
        check_parity(report, max_abs_diff=1e-4)


def test_parity_check_fails_when_a_label_flips_even_with_a_tiny_difference():
    keras_probabilities = np.array([[0.50001, 0.49999], [0.2, 0.8]], dtype=np.float32)
    onnx_output = np.array([[0.49999, 0.50001], [0.2, 0.8]], dtype=np.float32)
    report = parity_report(THRESHOLD_HALF, keras_probabilities, onnx_output)
    assert report.label_agreement == 0.5
    with pytest.raises(ParityError, match="label agreement"):
        check_parity(report, max_abs_diff=1e-4)


def test_parity_of_a_multiclass_model_compares_arg_max_labels():
    keras_probabilities = np.array([[0.4, 0.35, 0.25], [0.1, 0.2, 0.7]], dtype=np.float32)
    onnx_output = np.array([[0.35, 0.4, 0.25], [0.1, 0.2, 0.7]], dtype=np.float32)
    assert parity_report(card_for(("a", "b", "c")), keras_probabilities, onnx_output).label_agreement == 0.5
    assert parity_report(card_for(("a", "b", "c")), keras_probabilities, keras_probabilities).label_agreement == 1.0


def test_written_card_validates_and_hashes_the_written_model(tiny_onnx, tmp_path):
    onnx_path = write_onnx(tiny_onnx.SerializeToString(), tmp_path / "1")
    card = build_card(
        tiny_onnx,
        name="pneumonia-xray",
        version="1",
        task="chest X-ray: normal vs pneumonia",
        labels=("normal", "pneumonia"),
        classes=words("normal", "pneumonia"),
        preprocessing=preprocessing_spec(28),
        decision=Decision(positive_class="pneumonia", threshold=0.42),
        metrics={"test": {"accuracy": 0.5, "n": 3}},
        training={"seed": 0},
        onnx_sha256=file_sha256(onnx_path),
        created_at="2025-01-01T00:00:00Z",
    )
    card_path = write_card(card, tmp_path / "1")
    read_back = ModelCard.read(card_path.parent)
    assert read_back == card
    assert read_back.onnx_sha256 == file_sha256(onnx_path)
    assert read_back.labels == ["normal", "pneumonia"]
    assert read_back.classes == words("normal", "pneumonia")
    assert (read_back.decision.positive_class, read_back.decision.threshold) == ("pneumonia", 0.42)
    assert sorted(path.name for path in card_path.parent.iterdir()) == ["model.json", "model.onnx"]
