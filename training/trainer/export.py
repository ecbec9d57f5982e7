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
from inference.card import (
    CARD_FILE,
    ONNX_FILE,
    Calibration,
    Decision,
    Explanation,
    ModelCard,
    OutOfDistribution,
    Preprocessing,
    TensorSpec,
)

from trainer.evaluate import predicted_labels
from trainer.model import INPUT_NAME, OUTPUT_NAME, classifier_kernel, trust_model
from trainer.trust import Mahalanobis, class_activation_maps

BATCH_DIM = "batch"
CAM_OUTPUT = "class_activation"
OOD_OUTPUT = "ood_score"


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the Keras model."""


def to_onnx(model: keras.Model, opset: int, ood: Mahalanobis | None = None) -> onnx.ModelProto:
    """Convert through a tf.function with an explicit signature: one `image` in, `probabilities`
    out first; with `ood` also `class_activation` (when CAM applies) and `ood_score`."""
    height, width, channels = model.input_shape[1:]
    signature = [tf.TensorSpec([None, height, width, channels], tf.float32, name=INPUT_NAME)]
    serve = tf.function(_trust_outputs(model, ood) if ood else _probabilities(model), input_signature=signature)
    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    _order_outputs(model_proto, [OUTPUT_NAME, CAM_OUTPUT, OOD_OUTPUT])
    _name_batch_dimension(model_proto)
    onnx.checker.check_model(model_proto)
    return model_proto


def _probabilities(model: keras.Model):
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    return serve


def _trust_outputs(model: keras.Model, ood: Mahalanobis):
    """The graph's extra outputs, with the classifier kernel and the OOD statistics as constants."""
    extractor = trust_model(model)
    kernel = classifier_kernel(model).astype(np.float32)
    means = ood.means.astype(np.float32)
    # P = L L^T: |L^T d|^2 is the squared distance, a sum of squares (no cancellation in float32)
    whitening = np.linalg.cholesky(ood.precision).astype(np.float32)

    def serve(image):
        # constants made inside the function: made outside, tf2onnx would turn them into inputs
        values = extractor(image, training=False)
        outputs = {OUTPUT_NAME: values["probabilities"]}
        if "feature_maps" in values:  # (N, h, w, K) x (K, C) -> (N, C, h, w), static h, w
            _, height, width, channels = values["feature_maps"].shape
            flat = tf.matmul(tf.reshape(values["feature_maps"], [-1, channels]), tf.constant(kernel))
            maps = tf.reshape(flat, [-1, height, width, kernel.shape[1]])
            outputs[CAM_OUTPUT] = tf.transpose(maps, [0, 3, 1, 2])
        differences = values["embedding"][:, None, :] - tf.constant(means)[None]  # (N, C, K)
        whitened = tf.reshape(
            tf.matmul(tf.reshape(differences, [-1, means.shape[1]]), tf.constant(whitening)), [-1, *means.shape]
        )
        outputs[OOD_OUTPUT] = tf.sqrt(tf.reduce_min(tf.reduce_sum(tf.square(whitened), axis=2), axis=1))
        return outputs

    return serve


def _order_outputs(model_proto: onnx.ModelProto, order: list[str]) -> None:
    """tf2onnx sorts the outputs by name; the probabilities must stay the first (the card's contract)."""
    outputs = sorted(model_proto.graph.output, key=lambda value: order.index(value.name))
    del model_proto.graph.output[:]
    model_proto.graph.output.extend(outputs)


def _name_batch_dimension(model_proto: onnx.ModelProto) -> None:
    """tf2onnx calls the dynamic batch dimension `unk__N`; give it a stable, readable name."""
    for value in [*model_proto.graph.input, *model_proto.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM


def onnx_probabilities(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    return onnx_outputs(model_bytes, images, [OUTPUT_NAME])[OUTPUT_NAME]


def onnx_outputs(model_bytes: bytes, images: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The named outputs (default: all) of the ONNX model on a batch of images."""
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = names or [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: images.astype(np.float32)})))


def parity_report(keras_probabilities: np.ndarray, onnx_probabilities: np.ndarray, threshold: float | None) -> dict:
    """Largest probability difference and decision agreement (threshold None: arg-max)."""
    keras_labels = predicted_labels(keras_probabilities, threshold)
    onnx_labels = predicted_labels(onnx_probabilities, threshold)
    return {
        "max_abs_diff": float(np.max(np.abs(keras_probabilities - onnx_probabilities))),
        "label_agreement": float(np.mean(keras_labels == onnx_labels)),
        "n": len(keras_labels),
    }


def trust_parity(keras_values: dict, onnx_values: dict, kernel: np.ndarray, ood: Mahalanobis) -> dict:
    """The ONNX heatmaps and OOD scores against the same quantities computed (float64) from the
    Keras model's feature maps, classifier kernel and embeddings."""
    parity = {}
    if CAM_OUTPUT in onnx_values:
        expected = class_activation_maps(keras_values["feature_maps"], kernel)
        parity["class_activation_max_abs_diff"] = float(np.max(np.abs(onnx_values[CAM_OUTPUT] - expected)))
        parity["class_activation_max_abs"] = float(np.max(np.abs(expected)))
    expected = ood.scores(keras_values["embedding"])
    relative = np.abs(onnx_values[OOD_OUTPUT] - expected) / np.maximum(1.0, np.abs(expected))
    parity["ood_score_max_rel_diff"] = float(np.max(relative))
    return parity


def check_parity(report: dict, max_abs_diff: float) -> None:
    """Probabilities within `max_abs_diff` with identical labels; heatmaps within `max_abs_diff`
    relative to their largest value, OOD scores within it relatively (when exported)."""
    if report["max_abs_diff"] > max_abs_diff or report["label_agreement"] < 1.0:
        raise ParityError(
            f"ONNX output differs from Keras on {report['n']} images: max abs diff "
            f"{report['max_abs_diff']:.3g} (limit {max_abs_diff:g}), label agreement "
            f"{report['label_agreement']:.4f} (must be 1.0)"
        )
    heatmap_limit = max_abs_diff * max(1.0, report.get("class_activation_max_abs", 1.0))
    if report.get("class_activation_max_abs_diff", 0.0) > heatmap_limit:
        raise ParityError(
            f"ONNX class-activation maps differ from Keras by {report['class_activation_max_abs_diff']:.3g} "
            f"(limit {heatmap_limit:.3g})"
        )
    if report.get("ood_score_max_rel_diff", 0.0) > max_abs_diff:
        raise ParityError(
            f"ONNX OOD scores differ from Keras by {report['ood_score_max_rel_diff']:.3g} relatively "
            f"(limit {max_abs_diff:g})"
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
    calibration: dict | None = None,
    ood: dict | None = None,
) -> ModelCard:
    """A binary model decides by `threshold` on the second class; a multi-class one by arg-max (threshold None).

    `calibration` and `ood` are the run's evaluation records; the explanation section follows
    from the graph (a `class_activation` output)."""
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
        calibration=None if calibration is None else Calibration(**calibration),
        explanation=_explanation(outputs, preprocessing),
        ood=None if ood is None else _ood_section(ood),
        onnx_sha256=onnx_sha256,
        created_at=created_at,
    )


def _explanation(outputs: list[TensorSpec], preprocessing: Preprocessing) -> Explanation | None:
    heatmaps = [spec for spec in outputs if spec.name == CAM_OUTPUT]
    if not heatmaps:
        return None
    return Explanation(output=CAM_OUTPUT, shape=heatmaps[0].shape[2:], region=preprocessing.crop)


def _ood_section(ood: dict) -> OutOfDistribution:
    """The card keeps the headline figures; the report keeps the breakdown by kind of image."""
    metrics = {key: value for key, value in ood["metrics"].items() if not isinstance(value, dict)}
    return OutOfDistribution(
        output=OOD_OUTPUT,
        threshold=ood["threshold"],
        fitted_on=ood["fitted_on"],
        threshold_on=ood["threshold_on"],
        metrics=metrics,
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
