"""The model card: the JSON file that travels with every model.onnx.

It is the single description of a model that training writes and serving reads:
labels, tensors, the exact image preprocessing and the decision rule.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cxr_model.intended_use import IntendedUse

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"


class ResizeSpec(BaseModel):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    method: Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"] = "bicubic"


class Preprocessing(BaseModel):
    """How an image file becomes one input tensor row (applied in this order).

    1. decode; colour images are converted with ITU-R 601-2 luma when `color_mode`
       is grayscale;
    2. `crop`: `center_square` keeps the largest centred square, `none` keeps all;
    3. resize to `resize.width` x `resize.height` with `resize.method` (Pillow);
    4. `equalize`: `histogram` spreads the resized image's grey levels evenly over 0..255
       (Pillow's `ImageOps.equalize`), so exposure and contrast, which differ between sites
       and devices, no longer tell one hospital's images from another's; `none` keeps them;
    5. value = pixel * scale + offset, as `dtype`, laid out HWC with `channels`.
    """

    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    crop: Literal["center_square", "none"] = "center_square"
    resize: ResizeSpec
    equalize: Literal["none", "histogram"] = "none"
    channels: Literal[1, 3] = 1
    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["float32"] = "float32"
    scale: float = 1.0
    offset: float = 0.0


class TensorSpec(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class Decision(BaseModel):
    """Threshold on `positive_class` for binary models; arg-max when no threshold."""

    positive_class: str | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class Batching(BaseModel):
    """Dynamic batching for this model; fields left out take the server's settings."""

    enabled: bool = True
    max_batch_size: int | None = Field(default=None, gt=0)
    max_queue_delay_us: int | None = Field(default=None, ge=0)


class Calibration(BaseModel):
    """Temperature scaling: served probabilities = softmax(log(p) / temperature) of the raw output."""

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0.0)
    fitted_on: str = "val"
    # expected calibration error per split, before and after: {"val": {"before": .., "after": ..}}
    ece: dict[str, dict[str, float]] = {}


class Explanation(BaseModel):
    """Class-activation maps: output `output` holds one raw map per class, N x classes x h x w."""

    method: Literal["CAM"] = "CAM"
    output: str
    layout: Literal["NCHW"] = "NCHW"
    shape: list[int] = Field(min_length=2, max_length=2)  # [h, w]
    # the part of the original image the map covers: the preprocessing's crop (none: all of it)
    region: Literal["center_square", "none"] = "center_square"


class OutOfDistribution(BaseModel):
    """A score output (higher = less like the training data); above `threshold` flags the input."""

    method: Literal["mahalanobis"] = "mahalanobis"
    output: str
    threshold: float
    fitted_on: str = "train"
    threshold_on: str = "val"
    metrics: dict[str, float] = {}


class ClassDescription(BaseModel):
    """How a label is put into words for clinicians."""

    name: str  # the class as a clinician reads it: "Pneumonia"
    finding: str  # the sentence shown when the model decides this class: "Pneumonia suspected"


class CardSummary(BaseModel):
    """What a model server publishes of a card (the `parameters` of its model metadata) for clients that
    show or route to the model; read back with this schema on the other side."""

    version: str
    task: str
    description: str = ""
    labels: list[str] = Field(min_length=2)
    classes: dict[str, ClassDescription]  # every label's words
    metrics: dict[str, dict[str, float]] = {}
    metrics_ci: dict[str, dict[str, tuple[float, float]]] = {}
    intended_use: IntendedUse | None = None


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    task: str
    description: str = ""
    labels: list[str] = Field(min_length=2)  # in the order of the probabilities output
    # words for each label (a label without them is shown as it is)
    classes: dict[str, ClassDescription] = {}
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    preprocessing: Preprocessing
    decision: Decision = Decision()
    batching: Batching | None = None
    metrics: dict[str, dict[str, float]] = {}
    # 95% confidence intervals of `metrics` (split -> metric -> (low, high)), by bootstrap over the split's images
    metrics_ci: dict[str, dict[str, tuple[float, float]]] = {}
    training: dict[str, Any] = {}
    calibration: Calibration | None = None
    explanation: Explanation | None = None
    ood: OutOfDistribution | None = None
    intended_use: IntendedUse | None = None  # which images the model is made for; None: a model that routes images
    onnx_sha256: str
    created_at: str = ""

    @model_validator(mode="after")
    def _labels_are_consistent(self) -> ModelCard:
        unknown = set(self.classes) - set(self.labels)
        if unknown:
            raise ValueError(f"classes describes labels the model does not have: {sorted(unknown)}")
        positive = self.decision.positive_class
        if positive is not None and positive not in self.labels:
            raise ValueError(f"the decision's positive class {positive!r} is not one of the labels")
        return self

    def describe(self, label: str) -> ClassDescription:
        return self.classes.get(label) or ClassDescription(name=label, finding=f"Model output: {label}")

    def summary(self) -> CardSummary:
        return CardSummary(
            classes={label: self.describe(label) for label in self.labels},
            **self.model_dump(include={"version", "task", "description", "labels", "metrics", "metrics_ci"}),
            intended_use=self.intended_use,
        )

    @classmethod
    def read(cls, model_dir: Path) -> ModelCard:
        return cls.model_validate_json((model_dir / CARD_FILE).read_text())

    def write(self, model_dir: Path) -> None:
        (model_dir / CARD_FILE).write_text(self.model_dump_json(indent=2) + "\n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
