"""Does the exported ONNX graph reproduce the Keras model? Probabilities, the labels the server
would decide from them, and (when exported) the class-activation maps and OOD scores."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from cxr_model.card import ModelCard
from trainer.decision import served_label_ids
from trainer.trust import Mahalanobis, class_activation_maps

CAM_OUTPUT = "class_activation"
OOD_OUTPUT = "ood_score"


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the Keras model."""


class Parity(BaseModel):
    max_abs_diff: float  # of the probabilities
    label_agreement: float  # share of images the server would give the same label
    n: int
    class_activation_max_abs_diff: float | None = None
    class_activation_max_abs: float | None = None  # the largest Keras map value: the scale of the one above
    ood_score_max_rel_diff: float | None = None

    def for_card(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.model_dump(exclude_none=True).items()}


def parity_report(card: ModelCard, keras_probabilities: np.ndarray, onnx_probabilities: np.ndarray) -> Parity:
    """Largest probability difference, and how often the labels `card` decides from them agree."""
    keras_labels = served_label_ids(card, keras_probabilities)
    onnx_labels = served_label_ids(card, onnx_probabilities)
    return Parity(
        max_abs_diff=float(np.max(np.abs(keras_probabilities - onnx_probabilities))),
        label_agreement=float(np.mean(keras_labels == onnx_labels)),
        n=len(keras_labels),
    )


def trust_parity(
    parity: Parity,
    keras_values: dict[str, np.ndarray],
    onnx_values: dict[str, np.ndarray],
    kernel: np.ndarray,
    ood: Mahalanobis,
) -> Parity:
    """`parity` with the ONNX heatmaps and OOD scores compared with the same quantities computed
    (float64) from the Keras model's feature maps, classifier kernel and embeddings."""
    update: dict[str, float] = {}
    if CAM_OUTPUT in onnx_values:
        expected = class_activation_maps(keras_values["feature_maps"], kernel)
        update["class_activation_max_abs_diff"] = float(np.max(np.abs(onnx_values[CAM_OUTPUT] - expected)))
        update["class_activation_max_abs"] = float(np.max(np.abs(expected)))
    expected_scores = ood.scores(keras_values["embedding"])
    relative = np.abs(onnx_values[OOD_OUTPUT] - expected_scores) / np.maximum(1.0, np.abs(expected_scores))
    update["ood_score_max_rel_diff"] = float(np.max(relative))
    return parity.model_copy(update=update)


def check_parity(parity: Parity, max_abs_diff: float) -> None:
    """Probabilities within `max_abs_diff` with identical labels; heatmaps within `max_abs_diff`
    relative to their largest value, OOD scores within it relatively (when exported)."""
    if parity.max_abs_diff > max_abs_diff or parity.label_agreement < 1.0:
        raise ParityError(
            f"ONNX output differs from Keras on {parity.n} images: max abs diff "
            f"{parity.max_abs_diff:.3g} (limit {max_abs_diff:g}), label agreement "
            f"{parity.label_agreement:.4f} (must be 1.0)"
        )
    heatmap_difference = parity.class_activation_max_abs_diff or 0.0
    heatmap_limit = max_abs_diff * max(1.0, parity.class_activation_max_abs or 1.0)
    if heatmap_difference > heatmap_limit:
        raise ParityError(
            f"ONNX class-activation maps differ from Keras by {heatmap_difference:.3g} (limit {heatmap_limit:.3g})"
        )
    if (parity.ood_score_max_rel_diff or 0.0) > max_abs_diff:
        raise ParityError(
            f"ONNX OOD scores differ from Keras by {parity.ood_score_max_rel_diff:.3g} relatively "
            f"(limit {max_abs_diff:g})"
        )
