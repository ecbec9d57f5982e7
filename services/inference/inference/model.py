"""One ONNX model version: load it, run it, turn probabilities into a decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.card import ONNX_FILE, ModelCard, file_sha256
from inference.preprocessing import preprocess_bytes
from inference.settings import Settings

# v2 protocol datatype <-> numpy dtype
DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}


class ModelLoadError(RuntimeError):
    pass


class OnnxModel:
    def __init__(self, model_dir: Path, settings: Settings):
        self.model_dir = model_dir
        self.settings = settings
        self.card: ModelCard | None = None
        self.session: ort.InferenceSession | None = None
        self.ready = False

    @property
    def name(self) -> str:
        return self.model_dir.parent.name

    @property
    def version(self) -> str:
        return self.model_dir.name

    def load(self) -> None:
        """Read the card, check the file is the one it describes, open a session, warm up."""
        card = ModelCard.read(self.model_dir)
        onnx_path = self.model_dir / ONNX_FILE
        if (card.name, card.version) != (self.name, self.version):
            raise ModelLoadError(f"card says {card.name}/{card.version} but it lies in {self.name}/{self.version}")
        if file_sha256(onnx_path) != card.onnx_sha256:
            raise ModelLoadError(f"{onnx_path} does not match the sha256 in its model card")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = self.settings.inter_op_threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.card = card
        self._warm_up()
        self.ready = True

    def _warm_up(self) -> None:
        feeds = {}
        for spec in self.input_specs():
            shape = [1 if dim < 0 else dim for dim in spec["shape"]]
            feeds[spec["name"]] = np.zeros(shape, dtype=DATATYPES[spec["datatype"]])
        self.predict(feeds)

    def input_specs(self) -> list[dict]:
        return [_tensor_spec(node) for node in self.session.get_inputs()]

    def output_specs(self) -> list[dict]:
        return [_tensor_spec(node) for node in self.session.get_outputs()]

    def predict(self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        names = output_names or [node.name for node in self.session.get_outputs()]
        values = self.session.run(names, inputs)
        return dict(zip(names, values))

    def classify_images(self, images: list[bytes]) -> list[dict[str, float]]:
        """Raw image files -> class probabilities, preprocessed as the card says."""
        card = self.card
        batch = np.stack([preprocess_bytes(data, card.preprocessing, self.settings.max_image_pixels) for data in images])
        probabilities = self.predict({card.inputs[0].name: batch}, [card.outputs[0].name])[card.outputs[0].name]
        return [dict(zip(card.labels, map(float, row))) for row in probabilities]

    def decide(self, probabilities: dict[str, float]) -> str:
        """The label: a threshold on the positive class when the card sets one, else arg-max."""
        decision = self.card.decision
        if decision.positive_class is not None and decision.threshold is not None:
            if probabilities[decision.positive_class] >= decision.threshold:
                return decision.positive_class
            others = {label: p for label, p in probabilities.items() if label != decision.positive_class}
            return max(others, key=others.get)
        return max(probabilities, key=probabilities.get)


def _tensor_spec(node) -> dict:
    shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return {"name": node.name, "datatype": _ONNX_TYPES.get(node.type, node.type), "shape": shape}
