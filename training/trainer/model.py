"""The CNN: raw 0..255 pixels in, [p(normal), p(pneumonia)] out.

Rescaling and augmentation live inside the model (Keras preprocessing layers), so the
exported graph takes raw pixels and the random layers are identities at inference.
"""

from __future__ import annotations

import keras
from keras import layers

from trainer.config import TrainConfig
from trainer.data import LABELS, POSITIVE_CLASS

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def build_augmentation(config: TrainConfig) -> keras.Sequential:
    # "reflect" fills the borders with lung-field texture; black ("constant") borders gave a
    # clearly worse val AUC (0.995 vs 0.998) because no real image has them.
    fill_mode = "reflect"
    return keras.Sequential(
        [
            layers.RandomRotation(config.rotation, fill_mode=fill_mode, seed=config.seed),
            layers.RandomZoom(config.zoom, fill_mode=fill_mode, seed=config.seed + 1),
            layers.RandomTranslation(config.translation, config.translation, fill_mode=fill_mode, seed=config.seed + 2),
        ],
        name="augmentation",
    )


def conv_block(x, filters: int, name: str):
    for index in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return layers.MaxPooling2D(name=f"{name}_pool")(x)


def build_model(config: TrainConfig) -> keras.Model:
    inputs = keras.Input(shape=(config.image_size, config.image_size, 1), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = build_augmentation(config)(x)
    for index, filters in enumerate(config.filters, start=1):
        x = conv_block(x, filters, name=f"block{index}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(len(LABELS), activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="pneumonia_cnn")


@keras.saving.register_keras_serializable(package="trainer")
class PositiveClassAUC(keras.metrics.AUC):
    """ROC AUC of p(pneumonia) against sparse 0/1 labels."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, y_pred[:, POSITIVE_CLASS], sample_weight=sample_weight)


def compile_model(model: keras.Model, config: TrainConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=config.learning_rate, weight_decay=config.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"), PositiveClassAUC(name="auc")],
    )
