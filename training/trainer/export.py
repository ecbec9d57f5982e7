"""Keras -> ONNX conversion, the ONNX-vs-Keras parity check and the model card."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx
from inference.card import CARD_FILE, ONNX_FILE, Decision, ModelCard, Preprocessing, TensorSpec

from trainer.evaluate import predicted_labels
from trainer.model import INPUT_NAME, OUTPUT_NAME

BATCH_DIM = "batch"


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the Keras model."""


def to_onnx(model: keras.Model, opset: int) -> onnx.ModelProto:
    """Convert through a tf.function with an explicit signature: one `image` in, one `probabilities` out."""
    height, width, channels = model.input_shape[1:]
    signature = [tf.TensorSpec([None, height, width, channels], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    _name_batch_dimension(model_proto)
    onnx.checker.check_model(model_proto)
    return model_proto


def _name_batch_dimension(model_proto: onnx.ModelProto) -> None:
    """tf2onnx calls the dynamic batch dimension `unk__N`; give it a stable, readable name."""
    for value in [*model_proto.graph.input, *model_proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM


def onnx_probabilities(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})[0]


def parity_report(keras_probabilities: np.ndarray, onnx_probabilities: np.ndarray, threshold: float | None) -> dict:
    """Largest probability difference and decision agreement (threshold None: arg-max)."""
    keras_labels = predicted_labels(keras_probabilities, threshold)
    onnx_labels = predicted_labels(onnx_probabilities, threshold)
    return {
        "max_abs_diff": float(np.max(np.abs(keras_probabilities - onnx_probabilities))),
        "label_agreement": float(np.mean(keras_labels == onnx_labels)),
        "n": len(keras_labels),
    }


def check_parity(report: dict, max_abs_diff: float) -> None:
    if report["max_abs_diff"] > max_abs_diff or report["label_agreement"] < 1.0:
        raise ParityError(
            f"ONNX output differs from Keras on {report['n']} images: max abs diff "
            f"{report['max_abs_diff']:.3g} (limit {max_abs_diff:g}), label agreement "
            f"{report['label_agreement']:.4f} (must be 1.0)"
        )


def tensor_specs(model_proto: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The card's input/output tensors, read from the ONNX graph itself (-1 for the batch)."""

    def spec(value) -> TensorSpec:
        dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in value.type.tensor_type.shape.dim]
        return TensorSpec(name=value.name, datatype="FP32", shape=dims)

    return [spec(value) for value in model_proto.graph.input], [spec(value) for value in model_proto.graph.output]


def build_card(
    model_proto: onnx.ModelProto,
    *,
    name: str,
    version: str,
    preprocessing: Preprocessing,
    threshold: float | None,
    metrics: dict[str, dict[str, float]],
    training: dict,
    onnx_sha256: str,
    created_at: str,
    class_names: tuple[str, ...] = ("normal", "pneumonia"),
) -> ModelCard:
    """A binary model decides by `threshold` on the second class; a multi-class one by arg-max (threshold None)."""
    inputs, outputs = tensor_specs(model_proto)
    architecture = training.get("architecture", "compact")
    source = training.get("data", {}).get("source", "a chest X-ray image set")
    return ModelCard(
        name=name,
        version=version,
        task="chest X-ray: " + " vs ".join(class_names),
        description=(
            f"{architecture} CNN trained on {source}. Input: raw 0..255 pixels (the model rescales "
            f"them itself); output: [{', '.join(f'p({label})' for label in class_names)}]. "
            "A research and demo model, not a medical device."
        ),
        labels=list(class_names),
        inputs=inputs,
        outputs=outputs,
        preprocessing=preprocessing,
        decision=Decision(positive_class=class_names[1] if threshold is not None else None, threshold=threshold),
        metrics=metrics,
        training=training,
        onnx_sha256=onnx_sha256,
        created_at=created_at,
    )


def write_onnx(model_bytes: bytes, output_dir: Path) -> Path:
    """Write model.onnx atomically (a reader never sees half a file); returns its path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / ONNX_FILE
    handle, temporary = tempfile.mkstemp(dir=output_dir, prefix=".model-", suffix=".onnx")
    with os.fdopen(handle, "wb") as stream:
        stream.write(model_bytes)
    os.chmod(temporary, 0o644)  # mkstemp creates 0600; the model server may run as another user
    os.replace(temporary, target)
    return target


def write_card(card: ModelCard, output_dir: Path) -> Path:
    card.write(output_dir)
    return output_dir / CARD_FILE
