"""The model families: raw 0..255 pixels in, class probabilities out (Keras functional API).

Every architecture shares the same frame: rescaling and augmentation layers first (so the
exported graph takes raw pixels and the random layers are identities at inference), a body
that ends in a layer named `embedding` (the features the report's SVM / random forest and
t-SNE use), then dropout and a softmax layer named `probabilities`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from trainer.config import TrainConfig

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
EMBEDDING_LAYER = "embedding"
BACKBONE_LAYER = "backbone"


@keras.saving.register_keras_serializable(package="trainer")
class RandomShear(layers.RandomShear):
    """keras' RandomShear, loadable: Keras saves its factors as the range [-f, f], which its
    constructor then refuses (negative), so a saved model with shear could not be read back."""

    @classmethod
    def from_config(cls, config):
        for key in ("x_factor", "y_factor"):
            if isinstance(config.get(key), list | tuple):
                config[key] = max(abs(value) for value in config[key])
        return super().from_config(config)


def build_augmentation(config: TrainConfig) -> keras.Sequential:
    # "reflect" fills the borders with image texture: black ("constant") borders are something
    # no real image has, which the model would learn to use.
    fill_mode = "reflect"
    seed = config.seed
    augmentations = [
        layers.RandomRotation(config.rotation, fill_mode=fill_mode, seed=seed),
        layers.RandomZoom(config.zoom, fill_mode=fill_mode, seed=seed + 1),
        layers.RandomTranslation(config.translation, config.translation, fill_mode=fill_mode, seed=seed + 2),
    ]
    if config.shear:
        augmentations.append(RandomShear(config.shear, config.shear, fill_mode=fill_mode, seed=seed + 3))
    if config.flip != "none":
        augmentations.append(layers.RandomFlip(config.flip, seed=seed + 4))
    if config.brightness:
        augmentations.append(layers.RandomBrightness(config.brightness, value_range=(0.0, 1.0), seed=seed + 5))
    return keras.Sequential(augmentations, name="augmentation")


def conv_bn_relu(x, filters: int, name: str, momentum: float = 0.99):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def compact_body(x, config: TrainConfig):
    """The current default: (Conv-BN-ReLU x2, max-pool) per width, global average pooling.

    The last block skips its max-pool unless `final_pool`: its feature maps are the CAM grid."""
    for index, filters in enumerate(config.filters, start=1):
        x = conv_bn_relu(x, filters, name=f"block{index}_1", momentum=config.batch_norm_momentum)
        x = conv_bn_relu(x, filters, name=f"block{index}_2", momentum=config.batch_norm_momentum)
        if index < len(config.filters) or config.final_pool:
            x = layers.MaxPooling2D(name=f"block{index}_pool")(x)
    return layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(x)


def simple_cnn_body(x, config: TrainConfig, blocks: int):
    """One or two (Conv-ReLU, max-pool) blocks, flatten, a dense layer."""
    for index in range(blocks):
        x = layers.Conv2D(
            config.filters[min(index, len(config.filters) - 1)], 3, activation="relu", name=f"conv{index + 1}"
        )(x)
        x = layers.MaxPooling2D(name=f"pool{index + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Dense(128, activation="relu", name=EMBEDDING_LAYER)(x)


def vgg_body(x, config: TrainConfig):
    """VGG-style (3x3 valid Conv-ReLU, max-pool) blocks, one per configured width, flatten, Dense(512)."""
    for index, filters in enumerate(config.filters, start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"block{index}_conv")(x)
        x = layers.MaxPooling2D(name=f"block{index}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Dense(512, activation="relu", name=EMBEDDING_LAYER)(x)


def six_block_body(x, config: TrainConfig):
    """Six Conv-BN-ReLU-pool-dropout blocks (widths: each configured width twice)."""
    for index in range(6):
        filters = config.filters[min(index // 2, len(config.filters) - 1)]
        x = conv_bn_relu(x, filters, name=f"block{index + 1}", momentum=config.batch_norm_momentum)
        # "same" pooling keeps a 1x1 map at 1x1, so six blocks fit a 28 px input.
        x = layers.MaxPooling2D(padding="same", name=f"block{index + 1}_pool")(x)
        x = layers.Dropout(0.1, name=f"block{index + 1}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(128, activation="relu", name=EMBEDDING_LAYER)(x)


@keras.saving.register_keras_serializable(package="trainer")
class AffineSampler(layers.Layer):
    """The spatial transformer's bilinear sampler: samples `image` on the affine-transformed
    output grid given by `theta` (6 numbers per image, normalised [-1, 1] coordinates).

    Written with matmul, floor, gather and arithmetic only, so tf2onnx exports it; points
    outside the image take the nearest border pixel.
    """

    def call(self, inputs):
        image, theta = inputs
        height, width, channels = image.shape[1:]
        batch = tf.shape(image)[0]
        rows, columns = tf.meshgrid(tf.linspace(-1.0, 1.0, height), tf.linspace(-1.0, 1.0, width), indexing="ij")
        grid = tf.stack([tf.reshape(columns, [-1]), tf.reshape(rows, [-1]), tf.ones([height * width])])
        source = tf.matmul(tf.reshape(theta, [-1, 2, 3]), tf.tile(grid[None], [batch, 1, 1]))
        x = (source[:, 0] + 1.0) * (width - 1) / 2.0  # (batch, height * width) pixel coordinates
        y = (source[:, 1] + 1.0) * (height - 1) / 2.0
        x0, y0 = tf.floor(x), tf.floor(y)
        flat = tf.reshape(image, [-1, channels])
        offsets = tf.range(batch)[:, None] * (height * width)

        def pixels(row, column):
            row = tf.cast(tf.clip_by_value(row, 0.0, height - 1.0), tf.int32)
            column = tf.cast(tf.clip_by_value(column, 0.0, width - 1.0), tf.int32)
            return tf.gather(flat, tf.reshape(offsets + row * width + column, [-1]))

        wx, wy = tf.reshape(x - x0, [-1, 1]), tf.reshape(y - y0, [-1, 1])
        sampled = (
            pixels(y0, x0) * (1 - wx) * (1 - wy)
            + pixels(y0, x0 + 1) * wx * (1 - wy)
            + pixels(y0 + 1, x0) * (1 - wx) * wy
            + pixels(y0 + 1, x0 + 1) * wx * wy
        )
        return tf.reshape(sampled, [-1, height, width, channels])

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


def spatial_transformer(x, config: TrainConfig):
    """A localisation network predicts an affine transform (starting at identity)."""
    theta = layers.Conv2D(config.filters[0], 5, activation="relu", name="loc_conv")(x)
    theta = layers.MaxPooling2D(name="loc_pool")(theta)
    theta = layers.GlobalAveragePooling2D(name="loc_gap")(theta)
    theta = layers.Dense(32, activation="relu", name="loc_dense")(theta)
    theta = layers.Dense(
        6,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        name="loc_theta",
    )(theta)
    return AffineSampler(name="transformer")([x, theta])


def stn_body(x, config: TrainConfig):
    return compact_body(spatial_transformer(x, config), config)


def resnet101v2_body(x, config: TrainConfig):
    """ResNet101V2 transfer learning with a GAP + Dense(1024, L2) + BN head.

    The backbone starts frozen when a fine-tuning phase follows (fit.py unfreezes it)
    and runs in inference mode so its BatchNorm statistics stay those of the weights.
    """
    if x.shape[-1] == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)  # ResNetV2's input range
    backbone = keras.applications.ResNet101V2(
        include_top=False, weights=None, input_shape=x.shape[1:], name=BACKBONE_LAYER
    )
    if config.pretrained_weights is not None:
        backbone.load_weights(config.pretrained_weights)
    backbone.trainable = config.fine_tune_epochs == 0
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(1024, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4), name="head_dense")(x)
    return layers.BatchNormalization(name=EMBEDDING_LAYER)(x)


BODIES = {
    "compact": compact_body,
    "cnn1": lambda x, config: simple_cnn_body(x, config, blocks=1),
    "cnn2": lambda x, config: simple_cnn_body(x, config, blocks=2),
    "vgg": vgg_body,
    "cnn6": six_block_body,
    "stn": stn_body,
    "resnet101v2": resnet101v2_body,
}


def build_model(config: TrainConfig, num_classes: int = 2) -> keras.Model:
    inputs = keras.Input(shape=(config.image_size, config.image_size, config.channels), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = build_augmentation(config)(x)
    x = BODIES[config.architecture](x, config)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"{config.architecture}_classifier")
    if config.init_weights is not None:
        load_layer_weights(model, config.init_weights)
    return model


def layer_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every layer's weights as `<layer>/<index>` arrays (what `load_layer_weights` reads)."""
    return {
        f"{layer.name}/{index}": np.asarray(weight)
        for layer in model.layers
        for index, weight in enumerate(layer.get_weights())
    }


def load_layer_weights(model: keras.Model, path: Path) -> list[str]:
    """Copy the saved weights of the layers with the same name and shapes; the names of those copied."""
    with np.load(path) as saved:
        arrays = dict(saved)
    copied = []
    for layer in model.layers:
        current = layer.get_weights()
        stored = [arrays.get(f"{layer.name}/{index}") for index in range(len(current))]
        if current and all(
            new is not None and new.shape == old.shape for new, old in zip(stored, current, strict=True)
        ):
            layer.set_weights(stored)
            copied.append(layer.name)
    return copied


def embedding_model(model: keras.Model) -> keras.Model:
    """Image -> the features the classifier sees (dropout is an identity at inference); also
    works for models saved before the `embedding` layer had its name."""
    return keras.Model(model.inputs, model.get_layer(OUTPUT_NAME).input)


def cam_feature_maps(model: keras.Model):
    """The last convolutional feature maps when the embedding is their global average (CAM
    applies: the classifier is then linear in them), else None."""
    embedding = model.get_layer(EMBEDDING_LAYER)
    return embedding.input if isinstance(embedding, layers.GlobalAveragePooling2D) else None


def trust_model(model: keras.Model) -> keras.Model:
    """Image -> {"probabilities", "embedding", and "feature_maps" when CAM applies}, in one pass."""
    outputs = {"probabilities": model.outputs[0], "embedding": model.get_layer(OUTPUT_NAME).input}
    feature_maps = cam_feature_maps(model)
    if feature_maps is not None:
        outputs["feature_maps"] = feature_maps
    return keras.Model(model.inputs, outputs)


def classifier_kernel(model: keras.Model):
    """The (K, C) weights of the softmax layer (what CAM weighs the feature maps with)."""
    return model.get_layer(OUTPUT_NAME).get_weights()[0]


@keras.saving.register_keras_serializable(package="trainer")
class PositiveClassAUC(keras.metrics.AUC):
    """ROC AUC of p(positive class) against sparse 0/1 labels (binary models)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, y_pred[:, 1], sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="trainer")
class OneVsRestAUC(keras.metrics.AUC):
    """Micro-averaged one-vs-rest ROC AUC against sparse labels (multi-class models)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), tf.shape(y_pred)[-1])
        return super().update_state(one_hot, y_pred, sample_weight=sample_weight)


def compile_model(model: keras.Model, config: TrainConfig, learning_rate: float | None = None) -> None:
    binary = model.output_shape[-1] == 2
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=learning_rate or config.learning_rate, weight_decay=config.weight_decay
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            (PositiveClassAUC if binary else OneVsRestAUC)(name="auc"),
        ],
    )
