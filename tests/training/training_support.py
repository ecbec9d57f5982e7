"""Helpers the training tests share (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np

from cxr_model.card import ClassDescription, Decision, ModelCard, Preprocessing, ResizeSpec, TensorSpec

MEDNIST_CLASSES = ("Hand", "ChestCT", "CXR")  # three of MedNIST's folders


def words(*labels: str) -> dict[str, ClassDescription]:
    """Class words for labels, in their order (the order of the model's outputs)."""
    return {label: ClassDescription(name=label.title(), finding=f"{label.title()} seen") for label in labels}


def card_for(labels: tuple[str, ...], decision: Decision | None = None) -> ModelCard:
    """A valid card of a 28x28 grey model with these labels and decision (no file behind it)."""
    return ModelCard(
        name="unit",
        version="1",
        task=" vs ".join(labels),
        labels=list(labels),
        inputs=[TensorSpec(name="image", datatype="FP32", shape=[-1, 28, 28, 1])],
        outputs=[TensorSpec(name="probabilities", datatype="FP32", shape=[-1, len(labels)])],
        preprocessing=Preprocessing(resize=ResizeSpec(width=28, height=28)),
        decision=decision or Decision(),
        onnx_sha256="0" * 64,
    )


def binary_card(threshold: float) -> ModelCard:
    return card_for(("normal", "pneumonia"), Decision(positive_class="pneumonia", threshold=threshold))


def raw_pixels(count: int, size: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, size=(count, size, size, 1)).astype(np.float32)
