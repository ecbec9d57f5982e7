"""Stage 4, export: `export(...)` -> the model card, once model.onnx reproduces the Keras model.

Keras -> ONNX through tf2onnx (one `image` input; `probabilities` first, then
`class_activation` where CAM applies and `ood_score`), the parity check on the whole test
split, then `<output-dir>/model.onnx` + `model.json`: `<repository>/<name>/<version>/`, as
the inference service loads it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx

from cxr_model.card import (
    CARD_FILE,
    ONNX_FILE,
    Calibration,
    ClassDescription,
    Decision,
    Explanation,
    ModelCard,
    OutOfDistribution,
    Preprocessing,
    TensorSpec,
)
from trainer.config import TrainConfig
from trainer.data import Dataset, config_spec
from trainer.evaluate import Evaluation
from trainer.fit import FitResult, TrainingRecord
from trainer.model import INPUT_NAME, OUTPUT_NAME, classifier_kernel, trust_model
from trainer.parity import CAM_OUTPUT, OOD_OUTPUT, Parity, check_parity, parity_report, trust_parity
from trainer.trust import Mahalanobis

log = logging.getLogger("trainer")
BATCH_DIM = "batch"


def export(
    fitted: FitResult,
    dataset: Dataset,
    evaluation: Evaluation,
    training: TrainingRecord,
    config: TrainConfig,
    run_dir: Path,
) -> ModelCard:
    """Convert, check parity on test (ParityError: nothing written to the output folder), then
    write model.onnx + model.json to the output folder and the run folder."""
    model_proto = to_onnx(fitted.model, config.opset, fitted.ood)
    model_bytes = model_proto.SerializeToString()
    (run_dir / ONNX_FILE).write_bytes(model_bytes)  # kept for inspection even if the check fails
    _, outputs = tensor_specs(model_proto)
    card = build_card(
        model_proto,
        name=config.model_name,
        version=config.model_version,
        task=dataset.task,
        labels=dataset.labels,
        classes=dataset.classes,
        preprocessing=config_spec(config),
        decision=evaluation.decision,
        metrics=evaluation.card_metrics(),
        metrics_ci=evaluation.intervals,
        training=training.for_card(),
        onnx_sha256=hashlib.sha256(model_bytes).hexdigest(),
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        calibration=evaluation.calibration,
        ood=evaluation.ood.for_card(OOD_OUTPUT) if evaluation.ood and _has_output(outputs, OOD_OUTPUT) else None,
    )
    parity = checked_parity(card, fitted, model_bytes, dataset.test.images, config)
    card = card.model_copy(update={"metrics": card.metrics | {"onnx_parity": parity.for_card()}})
    onnx_path = write_onnx(model_bytes, config.output_dir)
    card.write(config.output_dir)
    card.write(run_dir)
    log.info("wrote %s and %s", onnx_path, config.output_dir / CARD_FILE)
    return card


def checked_parity(
    card: ModelCard, fitted: FitResult, model_bytes: bytes, images: np.ndarray, config: TrainConfig
) -> Parity:
    """The parity report on `images` (the test split), labels decided by `card`; ParityError
    unless within config.parity_max_abs_diff."""
    keras_values = trust_model(fitted.model).predict(images, batch_size=config.batch_size, verbose=0)
    onnx_values = onnx_outputs(model_bytes, images)
    parity = parity_report(card, keras_values["probabilities"], onnx_values[OUTPUT_NAME])
    parity = trust_parity(parity, keras_values, onnx_values, classifier_kernel(fitted.model), fitted.ood)
    log.info("ONNX parity %s", parity.for_card())
    check_parity(parity, config.parity_max_abs_diff)
    return parity


# --- the ONNX graph -----------------------------------------------------------------------


def to_onnx(model: keras.Model, opset: int, ood: Mahalanobis | None = None) -> onnx.ModelProto:
    """Convert through a tf.function with an explicit signature: one `image` in, `probabilities`
    out first; with `ood` also `class_activation` (when CAM applies) and `ood_score`."""
    height, width, channels = model.input_shape[1:]
    signature = [tf.TensorSpec([None, height, width, channels], tf.float32, name=INPUT_NAME)]
    outputs = _trust_outputs(model, ood) if ood else _probabilities(model)
    serve = tf.function(outputs, input_signature=signature)
    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    _order_outputs(model_proto, [OUTPUT_NAME, CAM_OUTPUT, OOD_OUTPUT])
    _name_batch_dimension(model_proto)
    onnx.checker.check_model(model_proto)
    return model_proto


def _probabilities(model: keras.Model) -> Callable[[Any], dict[str, Any]]:
    def serve(image: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(image, training=False)}

    return serve


def _trust_outputs(model: keras.Model, ood: Mahalanobis) -> Callable[[Any], dict[str, Any]]:
    """The graph's extra outputs, with the classifier kernel and the OOD statistics as constants."""
    extractor = trust_model(model)
    kernel = classifier_kernel(model).astype(np.float32)
    means = ood.means.astype(np.float32)
    # P = L L^T: |L^T d|^2 is the squared distance, a sum of squares (no cancellation in float32)
    whitening = np.linalg.cholesky(ood.precision).astype(np.float32)

    def serve(image: Any) -> dict[str, Any]:
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
    return dict(zip(names, session.run(names, {INPUT_NAME: images.astype(np.float32)}), strict=True))


def onnx_embeddings(model_bytes: bytes, images: np.ndarray) -> np.ndarray | None:
    """The features the classifier sees, read inside the graph: the input of the softmax layer's
    MatMul (N, K), as `model.embedding_model` gives them in Keras. None when the graph has no such node."""
    model_proto = onnx.load_from_string(model_bytes)
    classifier_inputs = [
        node.input[0] for node in model_proto.graph.node if node.op_type == "MatMul" and f"/{OUTPUT_NAME}" in node.name
    ]
    if len(classifier_inputs) != 1:
        return None
    name = classifier_inputs[0]
    model_proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return onnx_outputs(model_proto.SerializeToString(), images, [name])[name]


def tensor_specs(model_proto: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The card's input/output tensors, read from the ONNX graph itself (-1 for the batch)."""

    def spec(value: Any) -> TensorSpec:
        dims = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in value.type.tensor_type.shape.dim]
        return TensorSpec(name=value.name, datatype="FP32", shape=dims)

    return [spec(value) for value in model_proto.graph.input], [spec(value) for value in model_proto.graph.output]


def _has_output(outputs: list[TensorSpec], name: str) -> bool:
    return any(spec.name == name for spec in outputs)


# --- the card -----------------------------------------------------------------------------


def build_card(
    model_proto: onnx.ModelProto,
    *,
    name: str,
    version: str,
    task: str,
    labels: tuple[str, ...],
    classes: dict[str, ClassDescription],
    preprocessing: Preprocessing,
    decision: Decision,
    metrics: dict[str, dict[str, float]],
    training: dict[str, Any],
    onnx_sha256: str,
    created_at: str,
    metrics_ci: dict[str, dict[str, tuple[float, float]]] | None = None,
    calibration: Calibration | None = None,
    ood: OutOfDistribution | None = None,
) -> ModelCard:
    """The card of an ONNX graph; its explanation section follows from the graph (a
    `class_activation` output)."""
    inputs, outputs = tensor_specs(model_proto)
    architecture = training.get("architecture", "CNN")
    source = training.get("data", {}).get("source") or "an image set"
    return ModelCard(
        name=name,
        version=version,
        task=task,
        description=(
            f"{architecture} CNN trained on {source}. Input: raw 0..255 pixels (the model rescales "
            f"them itself); output: [{', '.join(f'p({label})' for label in labels)}]. "
            "A research and demo model, not a medical device."
        ),
        labels=list(labels),
        classes=classes,
        inputs=inputs,
        outputs=outputs,
        preprocessing=preprocessing,
        decision=decision,
        metrics=metrics,
        metrics_ci=metrics_ci or {},
        training=training,
        calibration=calibration,
        explanation=_explanation(outputs, preprocessing),
        ood=ood,
        onnx_sha256=onnx_sha256,
        created_at=created_at,
    )


def _explanation(outputs: list[TensorSpec], preprocessing: Preprocessing) -> Explanation | None:
    heatmaps = [spec for spec in outputs if spec.name == CAM_OUTPUT]
    if not heatmaps:
        return None
    return Explanation(output=CAM_OUTPUT, shape=heatmaps[0].shape[2:], region=preprocessing.crop)


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
