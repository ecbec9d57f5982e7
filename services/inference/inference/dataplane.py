"""Between HTTP and models: protocol validation, tensor conversion, decisions."""

from __future__ import annotations

import numpy as np

from inference import __version__
from inference.errors import BadRequest
from inference.model import DATATYPES, OnnxModel
from inference.protocol import (
    ImageClassification,
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    MetadataTensor,
    RequestInput,
    ResponseOutput,
)
from inference.repository import ModelRepository

SERVER_NAME = "cxr-inference"


class DataPlane:
    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.ready

    def server_metadata(self) -> MetadataServerResponse:
        return MetadataServerResponse(name=SERVER_NAME, version=__version__, extensions=["image_classification"])

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.repository.get(name, version).ready

    def model_metadata(self, name: str, version: str | None = None) -> MetadataModelResponse:
        model = self.repository.get(name, version)
        card = model.card
        return MetadataModelResponse(
            name=name,
            versions=self.repository.versions(name),
            platform="onnxruntime_onnx",
            inputs=[MetadataTensor(**spec) for spec in model.input_specs()],
            outputs=[MetadataTensor(**spec) for spec in model.output_specs()],
            parameters={
                "version": model.version,
                "task": card.task,
                "labels": card.labels,
                "preprocessing": card.preprocessing.model_dump(),
                "decision": card.decision.model_dump(),
            },
        )

    def infer(self, name: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        model = self.repository.get(name, version)
        expected = {spec["name"]: spec for spec in model.input_specs()}
        feeds = {item.name: _to_array(item, expected) for item in request.inputs}
        missing = set(expected) - set(feeds)
        if missing:
            raise BadRequest(f"missing inputs: {sorted(missing)}")
        known_outputs = [spec["name"] for spec in model.output_specs()]
        wanted = [item.name for item in request.outputs] if request.outputs else known_outputs
        unknown = set(wanted) - set(known_outputs)
        if unknown:
            raise BadRequest(f"unknown outputs: {sorted(unknown)}; the model has {known_outputs}")
        results = model.predict(feeds, wanted)
        return InferenceResponse(
            model_name=model.name,
            model_version=model.version,
            id=request.id,
            outputs=[_to_output(output_name, results[output_name]) for output_name in wanted],
        )

    def classify_image(self, name: str, version: str | None, image: bytes) -> ImageClassification:
        model = self.repository.get(name, version)
        probabilities = model.classify_images([image])[0]
        decision = model.card.decision
        return ImageClassification(
            model_name=model.name,
            model_version=model.version,
            label=model.decide(probabilities),
            probabilities=probabilities,
            threshold=decision.threshold,
            positive_class=decision.positive_class,
        )


def _to_array(item: RequestInput, expected: dict[str, dict]) -> np.ndarray:
    spec = expected.get(item.name)
    if spec is None:
        raise BadRequest(f"unknown input '{item.name}'; the model takes {sorted(expected)}")
    if item.datatype != spec["datatype"]:
        raise BadRequest(f"input '{item.name}' must be {spec['datatype']}, got {item.datatype}")
    if len(item.shape) != len(spec["shape"]) or any(
        want not in (-1, got) for want, got in zip(spec["shape"], item.shape)
    ):
        raise BadRequest(f"input '{item.name}' must have shape {spec['shape']}, got {item.shape}")
    try:
        array = np.asarray(item.data, dtype=DATATYPES[item.datatype])
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"input '{item.name}' data is not {item.datatype}: {exc}") from exc
    if array.size != int(np.prod(item.shape)):
        raise BadRequest(f"input '{item.name}' has {array.size} values; shape {item.shape} needs {int(np.prod(item.shape))}")
    return array.reshape(item.shape)


def _to_output(name: str, array: np.ndarray) -> ResponseOutput:
    datatype = next(key for key, dtype in DATATYPES.items() if np.dtype(dtype) == array.dtype)
    return ResponseOutput(name=name, shape=list(array.shape), datatype=datatype, data=array.ravel().tolist())
