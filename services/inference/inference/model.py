"""One ONNX model version: load it, run it, turn probabilities into a decision."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from PIL import Image

from cxr_model.answer import Classification, classification
from cxr_model.card import ONNX_FILE, ModelCard, file_sha256
from cxr_model.images import decode_image
from cxr_model.preprocessing import preprocess, preprocess_bytes
from inference.codec import DATATYPES
from inference.errors import BadRequest
from inference.settings import Settings

log = logging.getLogger(__name__)

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
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
    """A loaded model version: its card, an onnxruntime session, and the model's own threads."""

    def __init__(self, model_dir: Path, card: ModelCard, session: ort.InferenceSession, settings: Settings):
        self.model_dir = model_dir
        self.card = card
        self.session = session
        self.settings = settings
        self._input_specs = [_tensor_spec(node) for node in session.get_inputs()]
        self._output_specs = [_tensor_spec(node) for node in session.get_outputs()]
        self.input_spec_by_name = {spec["name"]: spec for spec in self._input_specs}
        self.output_names = [spec["name"] for spec in self._output_specs]
        self.seconds_per_row = float("inf")  # one row's run time, measured at warm-up
        self._runs = threading.BoundedSemaphore(settings.concurrent_runs_per_model)
        # The model's own threads, like Triton's model instances: a call's activations are allocated
        # and freed by the same few threads (and allocator arenas) whichever request it serves.
        self._threads = ThreadPoolExecutor(settings.concurrent_runs_per_model, thread_name_prefix="onnx-run")
        self.ready = False

    @classmethod
    def load(cls, model_dir: Path, settings: Settings) -> OnnxModel:
        """Read the card, check the file is the one it describes, open a session, warm up."""
        card = ModelCard.read(model_dir)
        onnx_path = model_dir / ONNX_FILE
        if (card.name, card.version) != (model_dir.parent.name, model_dir.name):
            raise ModelLoadError(f"card says {card.name}/{card.version} but it lies in {model_dir}")
        if file_sha256(onnx_path) != card.onnx_sha256:
            raise ModelLoadError(f"{onnx_path} does not match the sha256 in its model card")
        session = ort.InferenceSession(str(onnx_path), _session_options(settings), providers=_providers(settings))
        model = cls(model_dir, card, session, settings)
        model._warm_up()
        model.ready = True
        return model

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def unload(self) -> None:
        # the session and the model's threads go with the last reference, after calls still running on them
        self.ready = False

    def _warm_up(self) -> None:
        """Run once (onnxruntime prepares on the first run), then time a run of one row."""
        feeds = {}
        for spec in self.input_specs():
            shape = [1 if dim < 0 else dim for dim in spec["shape"]]
            feeds[spec["name"]] = np.zeros(shape, dtype=DATATYPES[spec["datatype"]])
        self.predict(feeds)
        started = time.perf_counter()
        self.predict(feeds)
        rows = next((shape[0] for shape in (feed.shape for feed in feeds.values()) if shape), 1)
        self.seconds_per_row = (time.perf_counter() - started) / max(rows, 1)

    def runs_quickly(self, rows: int) -> bool:
        """Whether a run of `rows` is expected to take at most `inline_run_max_ms` (see `predict_here`)."""
        return rows * self.seconds_per_row * 1000 <= self.settings.inline_run_max_ms

    def input_specs(self) -> list[dict]:
        return self._input_specs  # read from the session once, at load

    def output_specs(self) -> list[dict]:
        return self._output_specs

    async def predict_on_model_thread(
        self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """`predict` on one of the model's threads; a caller that gives up leaves the call to finish there."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.predict, inputs, output_names)

    def predict(self, inputs: dict[str, np.ndarray], output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        with self._runs:
            return self._run(inputs, output_names or self.output_names)

    def predict_here(self, inputs: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """`predict` on the calling thread if a run can start at once; None if the model's runs are all taken.

        The data plane calls it on the event loop for a quick run when nothing else is in flight:
        the hop to the model's thread and back would cost more than the run.
        """
        if not self._runs.acquire(blocking=False):
            return None
        try:
            return self._run(inputs, output_names)
        finally:
            self._runs.release()

    def _run(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(names, inputs)
        except InvalidArgument as exc:  # onnxruntime's word for inputs the graph cannot take
            raise BadRequest(f"the model cannot run on these inputs: {exc}") from exc
        return dict(zip(names, values, strict=True))

    @property
    def batchable(self) -> bool:
        """Requests can be merged when every tensor has a free batch dimension."""
        return all(spec["shape"][:1] == [-1] for spec in self.input_specs() + self.output_specs())

    @property
    def image_input(self) -> str:
        """The input an image file is preprocessed into (the card's first input)."""
        return self.card.inputs[0].name

    @property
    def probabilities_output(self) -> str:
        return self.card.outputs[0].name

    def preprocess_images(self, images: list[bytes]) -> np.ndarray:
        """Raw image files -> one input batch, preprocessed as the card says."""
        spec, max_pixels = self.card.preprocessing, self.settings.max_image_pixels
        return np.stack([preprocess_bytes(data, spec, max_pixels) for data in images])

    def decode_and_preprocess(self, data: bytes) -> tuple[Image.Image, np.ndarray]:
        """An image file -> the decoded image (for other models to preprocess) and this model's batch of one."""
        decoded = decode_image(data, self.settings.max_image_pixels)
        return decoded, self.preprocess_decoded(decoded)

    def preprocess_decoded(self, image: Image.Image) -> np.ndarray:
        """A decoded image -> a batch of one, preprocessed as the card says."""
        return preprocess(image, self.card.preprocessing)[None]

    def classification(self, outputs: dict[str, np.ndarray]) -> Classification:
        """The answer for one image from its row of `classify_outputs`."""
        return classification(self.card, outputs)

    def classify_outputs(self) -> list[str]:
        """What the image call runs: the probabilities, plus the heatmap and OOD outputs the card declares."""
        extra = [self.card.explanation, self.card.ood]
        return [self.probabilities_output] + [item.output for item in extra if item is not None]


def _session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[settings.graph_optimization_level]
    options.enable_cpu_mem_arena = settings.cpu_memory_arena
    spinning = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


def _providers(settings: Settings) -> list[str]:
    """The configured execution providers this onnxruntime build has, CPU as the fallback."""
    available = ort.get_available_providers()
    skipped = [name for name in settings.execution_providers if name not in available]
    if skipped:
        log.warning("execution providers %s are not available here (only %s)", skipped, available)
    return [name for name in settings.execution_providers if name in available] or ["CPUExecutionProvider"]


def _tensor_spec(node) -> dict:
    shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return {"name": node.name, "datatype": _ONNX_TYPES.get(node.type, node.type), "shape": shape}
