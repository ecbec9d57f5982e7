"""Every architecture trains, evaluates and exports with ONNX parity (1 epoch, the 55 sample X-rays)."""

import numpy as np
import pytest

from cxr_model.card import ModelCard
from trainer.config import ARCHITECTURES, TrainConfig
from trainer.export import onnx_probabilities, to_onnx
from trainer.model import AffineSampler, build_model
from trainer.pipeline import train


@pytest.mark.parametrize("architecture", [name for name in ARCHITECTURES if name != "resnet101v2"])
def test_architecture_trains_evaluates_and_exports(architecture, quick_config):
    config = quick_config(architecture=architecture)
    card = train(config)
    assert card.labels == ["normal", "pneumonia"] and card.decision.positive_class == "pneumonia"
    assert card.training["architecture"] == architecture
    assert card.metrics["onnx_parity"]["label_agreement"] == 1.0
    assert card.metrics["onnx_parity"]["max_abs_diff"] <= 1e-4
    (run_dir,) = config.runs_dir.iterdir()
    assert (run_dir / "report" / "report.md").is_file()
    assert ModelCard.read(config.output_dir) == card


def test_resnet101v2_two_phases_at_32px(quick_config):
    config = quick_config(architecture="resnet101v2", image_size=32, channels=3, fine_tune_epochs=1)
    card = train(config)
    assert card.inputs[0].shape == [-1, 32, 32, 3]
    assert card.training["epochs_run"] == 2  # one frozen-backbone epoch, one fine-tuning epoch
    assert card.metrics["onnx_parity"]["label_agreement"] == 1.0
    assert card.metrics["onnx_parity"]["max_abs_diff"] <= 1e-4


def test_affine_sampler_identity_returns_the_image_and_a_shift_moves_it():
    images = np.random.default_rng(0).uniform(0, 1, size=(2, 6, 6, 1)).astype(np.float32)
    identity = np.tile(np.array([[1, 0, 0, 0, 1, 0]], dtype=np.float32), (2, 1))
    sampler = AffineSampler()
    np.testing.assert_allclose(np.asarray(sampler([images, identity])), images, atol=1e-6)
    # x_source = x_target + 0.4 (normalised) = one pixel to the right on a 6-pixel side
    shifted = np.asarray(sampler([images, identity + np.array([0, 0, 0.4, 0, 0, 0], dtype=np.float32)]))
    np.testing.assert_allclose(shifted[:, :, :-1], images[:, :, 1:], atol=1e-5)
    np.testing.assert_allclose(shifted[:, :, -1], images[:, :, -1], atol=1e-5)  # border replicated


def test_spatial_transformer_exports_a_non_identity_transform():
    model = build_model(TrainConfig(architecture="stn", filters=(4, 8)))
    theta = model.get_layer("loc_theta")
    kernel, bias = theta.get_weights()
    theta.set_weights([kernel + 0.01, bias + np.array([0.1, 0.2, 0.1, -0.1, -0.1, 0.3], dtype=np.float32)])
    images = np.random.default_rng(1).uniform(0, 255, size=(4, 28, 28, 1)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    actual = onnx_probabilities(to_onnx(model, opset=17).SerializeToString(), images)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_oversampling_replaces_class_weights_in_a_run(quick_config):
    card = train(quick_config(oversample=True, shear=0.1, flip="horizontal", brightness=0.1))
    assert card.training["imbalance"] == "oversampled with augmentation"
    assert card.training["class_weight"] is None
    assert card.training["config"]["oversample"] is True
