from dataclasses import replace

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainer.config import TrainConfig
from trainer.fit import best_epoch
from trainer.model import INPUT_NAME, OUTPUT_NAME, PositiveClassAUC, build_model

TINY = TrainConfig(filters=(4, 8))


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model(TINY)


def raw_pixels(count: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, size=(count, 28, 28, 1)).astype(np.float32)


def test_model_takes_raw_images_and_returns_two_probabilities(model):
    assert [tensor.name for tensor in model.inputs] == [INPUT_NAME]
    assert tuple(model.input_shape) == (None, 28, 28, 1)
    assert model.output_shape == (None, 2)
    assert model.layers[-1].name == OUTPUT_NAME
    probabilities = model.predict(raw_pixels(6), verbose=0)
    assert probabilities.shape == (6, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert (probabilities >= 0).all()


def test_rescaling_to_unit_range_happens_inside_the_model(model):
    rescale = model.get_layer("rescale")
    assert isinstance(rescale, keras.layers.Rescaling)
    assert float(rescale.scale) == pytest.approx(1 / 255)
    assert model.layers.index(rescale) < model.layers.index(model.get_layer("augmentation"))


def test_augmentation_is_active_in_training_only(model):
    images = raw_pixels(4) / 255.0
    augmentation = model.get_layer("augmentation")
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    assert not np.allclose(np.asarray(augmentation(images, training=True)), images)
    first, second = model(raw_pixels(4), training=False), model(raw_pixels(4), training=False)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


def test_positive_class_auc_scores_the_pneumonia_column():
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    positive = np.array([0.1, 0.6, 0.7, 0.9, 0.4, 0.3, 0.8, 0.2], dtype=np.float32)
    metric = PositiveClassAUC(num_thresholds=1000)
    metric.update_state(labels, np.stack([1 - positive, positive], axis=1))
    assert float(metric.result()) == pytest.approx(roc_auc_score(labels, positive), abs=1e-3)


def test_best_epoch_follows_the_monitor_direction():
    history = {"val_auc": [0.90, 0.95, 0.95, 0.93], "val_loss": [0.5, 0.3, 0.2, 0.4]}
    assert best_epoch(history, "val_auc") == 2  # first of the tied maxima, like EarlyStopping
    assert best_epoch(history, "val_loss") == 3


def test_configured_augmentations_join_the_model_and_stay_off_at_inference():
    config = TrainConfig(filters=(4,), shear=0.1, flip="horizontal", brightness=0.2)
    augmentation = build_model(config).get_layer("augmentation")
    kinds = [type(layer).__name__ for layer in augmentation.layers]
    assert kinds == [
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomShear",
        "RandomFlip",
        "RandomBrightness",
    ]
    images = raw_pixels(4) / 255.0
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    assert not np.allclose(np.asarray(augmentation(images, training=True)), images)
    plain = replace(TINY, shear=0.0, brightness=0.0)
    assert [type(layer).__name__ for layer in build_model(plain).get_layer("augmentation").layers] == kinds[:3]
    assert [type(layer).__name__ for layer in build_model(TINY).get_layer("augmentation").layers] == [
        *kinds[:4],
        "RandomBrightness",
    ]  # the defaults: shear and brightness on
