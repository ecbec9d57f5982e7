"""The classification answer: what the inference service returns for one image, what the
gateway reads (`Classification.model_validate`), stores and serves. Defined once, here.

Labels and their words come from the model card; no other file names a class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cxr_model.card import ModelCard
from cxr_model.trust import calibrate, normalised_heatmap

Region = Literal["center_square", "none"]


class ClassInfo(BaseModel):
    label: str
    name: str  # as a clinician reads it
    finding: str  # the sentence shown when this class is decided


class AppliedCalibration(BaseModel):
    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0.0)


class OodCheck(BaseModel):
    """The model's out-of-distribution guard: `flagged` when the image is unlike its training data."""

    method: str
    score: float
    threshold: float | None  # None only in results stored before the threshold was kept with them
    flagged: bool


class Heatmap(BaseModel):
    """A class-activation heatmap: rows top to bottom of values 0..1, over `region` of the image."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    method: str
    class_: str = Field(alias="class")  # the label explained: the decided one
    region: Region  # the part of the image the heatmap covers: the preprocessing's crop, or all of it
    heatmap: list[list[float]] = Field(min_length=1)


class Classification(BaseModel):
    """One model's answer for one image.

    `probabilities` and `label` are calibrated when the card says how (`calibration`); `ood`
    and `explanation` are null for models without those outputs.
    """

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    task: str = ""
    classes: list[ClassInfo] = Field(min_length=2)  # every label the model can give, in output order
    label: str
    probabilities: dict[str, float]
    positive_class: str | None = None  # binary models: the class the threshold applies to
    threshold: float | None = None
    calibration: AppliedCalibration | None = None
    ood: OodCheck | None = None
    explanation: Heatmap | None = None
    # the answers of the models that follow this one on its label (a severity grade after a finding),
    # from the same request; a follow-up model's card names the model and label it follows
    followups: list[Classification] = []

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.classes]

    def describe(self, label: str) -> ClassInfo:
        return next(item for item in self.classes if item.label == label)


class RoutedClassification(BaseModel):
    """One image through a routing model and on to the model its label is routed to: `routing` is the
    routing model's answer (e.g. the image's kind), `routed` the answer of the model routed to (None when
    no route was given for the label)."""

    routing: Classification
    routed: Classification | None = None


def decide(card: ModelCard, probabilities: Mapping[str, float]) -> str:
    """The label: a threshold on the positive class when the card sets one, else arg-max."""
    positive, threshold = card.decision.positive_class, card.decision.threshold
    if positive is not None and threshold is not None:
        if probabilities[positive] >= threshold:
            return positive
        probabilities = {label: p for label, p in probabilities.items() if label != positive}
    return max(probabilities, key=lambda label: probabilities[label])


def calibrated(card: ModelCard, probabilities: np.ndarray) -> np.ndarray:
    """Raw probabilities (one row or a batch) scaled by the card's temperature, if it has one."""
    if card.calibration is None:
        return probabilities
    return calibrate(probabilities, card.calibration.temperature)


def classification(card: ModelCard, outputs: Mapping[str, np.ndarray]) -> Classification:
    """The answer from one image's raw outputs (the card's probabilities output, and its
    explanation and OOD outputs where the card declares them)."""
    row = calibrated(card, outputs[card.outputs[0].name])
    probabilities = {label: float(p) for label, p in zip(card.labels, row, strict=True)}
    label = decide(card, probabilities)
    return Classification(
        model_name=card.name,
        model_version=card.version,
        task=card.task,
        classes=[ClassInfo(label=name, **card.describe(name).model_dump()) for name in card.labels],
        label=label,
        probabilities=probabilities,
        positive_class=card.decision.positive_class,
        threshold=card.decision.threshold,
        calibration=AppliedCalibration(temperature=card.calibration.temperature) if card.calibration else None,
        ood=_ood_check(card, outputs),
        explanation=_heatmap(card, outputs, label),
    )


def _ood_check(card: ModelCard, outputs: Mapping[str, np.ndarray]) -> OodCheck | None:
    if card.ood is None:
        return None
    score = float(outputs[card.ood.output])
    return OodCheck(
        method=card.ood.method, score=score, threshold=card.ood.threshold, flagged=score > card.ood.threshold
    )


def _heatmap(card: ModelCard, outputs: Mapping[str, np.ndarray], label: str) -> Heatmap | None:
    if card.explanation is None:
        return None
    values = normalised_heatmap(outputs[card.explanation.output][card.labels.index(label)])
    return Heatmap(
        method=card.explanation.method, class_=label, region=card.explanation.region, heatmap=values.tolist()
    )
