"""Calibration, class-activation maps and the OOD guard: fitted in training, carried by the ONNX graph."""

import keras
import numpy as np
import pytest

from cxr_model.card import ONNX_FILE
from cxr_model.preprocessing import preprocess_bytes
from cxr_model.trust import calibrate
from trainer.config import TrainConfig
from trainer.data import preprocessing_spec
from trainer.export import onnx_outputs
from trainer.fit import CHECKPOINT
from trainer.metrics import expected_calibration_error
from trainer.model import classifier_kernel, trust_model
from trainer.pipeline import train
from trainer.trust import (
    Mahalanobis,
    class_activation_maps,
    fit_mahalanobis,
    fit_temperature,
    ood_metrics,
    ood_threshold,
    out_of_distribution_images,
)


def test_temperature_fit_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(5000, 2))
    true_temperature = 2.5  # the labels follow softmax(logits / 2.5): the raw softmax is overconfident
    calibrated = calibrate(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), true_temperature)
    labels = (rng.uniform(size=5000) < calibrated[:, 1]).astype(int)
    overconfident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    temperature = fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(true_temperature, rel=0.1)
    assert expected_calibration_error(labels, calibrate(overconfident, temperature)) < 0.5 * (
        expected_calibration_error(labels, overconfident)
    )


def test_calibration_keeps_the_ranking_and_sums_to_one():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.01, 0.99], [1.0, 0.0]])
    for temperature in (0.5, 1.0, 3.0):
        scaled = calibrate(probabilities, temperature)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
        assert np.argsort(scaled[:, 1]).tolist() == np.argsort(probabilities[:, 1]).tolist()
    np.testing.assert_allclose(calibrate(probabilities[:3], 1.0), probabilities[:3])


def test_mahalanobis_scores_grow_away_from_the_training_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 500)
    embeddings = rng.normal(0, 1, size=(1000, 8)) + labels[:, None] * 4.0
    mahalanobis = fit_mahalanobis(embeddings, labels, num_classes=2)
    near = mahalanobis.scores(rng.normal(0, 1, size=(200, 8)) + 4.0)
    far = mahalanobis.scores(rng.normal(0, 1, size=(200, 8)) + 12.0)
    threshold = ood_threshold(mahalanobis.scores(embeddings), 0.975)
    metrics = ood_metrics(near, {"far": far}, threshold)
    assert metrics.auroc > 0.99 and metrics.out_flag_rate_by_kind["far"] == 1.0
    assert metrics.test_false_flag_rate < 0.1
    assert set(metrics.for_card()) == {"auroc", "test_false_flag_rate", "out_flag_rate", "n_in", "n_out"}


def test_the_ood_image_set_has_every_kind_through_the_serving_preprocessing(data_dir):
    test_images = np.full((5, 28, 28, 1), 100.0, dtype=np.float32)
    kinds = out_of_distribution_images(preprocessing_spec(28), data_dir, test_images, seed=0)
    assert set(kinds) == {"ct_slice", "natural", "blank", "uniform_noise", "gaussian_noise", "inverted_test"}
    assert all(images.shape[1:] == (28, 28, 1) and images.dtype == np.float32 for images in kinds.values())
    np.testing.assert_array_equal(kinds["inverted_test"], 155.0)


@pytest.fixture(scope="module")
def tiny_run(samples_dir, tmp_path_factory):
    """A compact model trained for one epoch on the sample X-rays, exported with all its outputs."""
    root = tmp_path_factory.mktemp("trust")
    config = TrainConfig(
        dataset="image-folder",
        data_dir=samples_dir,
        output_dir=root / "model" / "2",
        runs_dir=root / "runs",
        epochs=1,
        batch_size=16,
        filters=(4, 8),
        embedding_baselines=False,
        verbose=0,
    )
    card = train(config)
    (run_dir,) = config.runs_dir.iterdir()
    return config, card, keras.saving.load_model(run_dir / CHECKPOINT)


def test_onnx_heatmaps_equal_the_keras_ones_for_the_sample_xrays(tiny_run, samples_dir):
    config, card, model = tiny_run
    images = np.stack(
        [preprocess_bytes(path.read_bytes(), card.preprocessing) for path in sorted(samples_dir.glob("*/*.jp*g"))]
    )
    keras_values = trust_model(model).predict(images, verbose=0)
    expected = class_activation_maps(keras_values["feature_maps"], classifier_kernel(model))
    onnx_heatmaps = onnx_outputs((config.output_dir / ONNX_FILE).read_bytes(), images)["class_activation"]
    assert onnx_heatmaps.shape == (55, 2, *card.explanation.shape) == expected.shape
    difference = float(np.max(np.abs(onnx_heatmaps - expected)))
    print(f"heatmap parity on the 55 sample X-rays: max abs diff {difference:.3g}")
    assert difference <= 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    # CAM's defining property: each map's spatial mean plus the bias is the class logit
    bias = model.get_layer("probabilities").get_weights()[1]
    logits = expected.mean(axis=(2, 3)) + bias
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, keras_values["probabilities"], atol=1e-5)


def test_onnx_ood_scores_equal_the_numpy_ones(tiny_run, samples_dir):
    config, card, model = tiny_run
    paths = sorted(samples_dir.glob("*/*.jp*g"))
    images = np.stack([preprocess_bytes(path.read_bytes(), card.preprocessing) for path in paths])
    (run_dir,) = config.runs_dir.iterdir()
    mahalanobis = Mahalanobis.load(run_dir / "ood.npz")
    expected = mahalanobis.scores(trust_model(model).predict(images, verbose=0)["embedding"])
    scores = onnx_outputs((config.output_dir / ONNX_FILE).read_bytes(), images)["ood_score"]
    np.testing.assert_allclose(scores, expected, rtol=1e-4)
