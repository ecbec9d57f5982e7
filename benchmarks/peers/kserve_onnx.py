"""A minimal onnxruntime model for KServe's Python model server (the peer benchmark's KServe row).

Run in the benchmark's KServe virtual environment:
    python kserve_onnx.py --model_name NAME --model_path model.onnx --http_port 8080
Every other argument is KServe's own (`kserve.model_server.parser`). The model is what a
KServe user would write: `predict` is synchronous (KServe calls it on its event loop, no
thread hop), the request's tensors come from `InferInput.as_numpy()` and the requested
outputs (with their `binary_data` flags) are handed back to KServe to encode.
"""

from __future__ import annotations

import argparse
import logging

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid
from onnx_session import session_options


class OnnxModel(Model):
    def __init__(self, name: str, path: str, threads: int):
        super().__init__(name)
        self.path, self.threads = path, threads
        self.session: ort.InferenceSession | None = None
        self.output_names: list[str] = []

    def load(self) -> bool:
        self.session = ort.InferenceSession(
            self.path, session_options(self.threads), providers=["CPUExecutionProvider"]
        )
        self.output_names = [node.name for node in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        assert self.session is not None
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        names = [output.name for output in payload.request_outputs] if payload.request_outputs else self.output_names
        values = self.session.run(names, feeds)
        outputs = [
            InferOutput(name=name, shape=list(value.shape), datatype=from_np_dtype(value.dtype), data=np.asarray(value))
            for name, value in zip(names, values, strict=True)
        ]
        return InferResponse(
            response_id=payload.id or generate_uuid(),  # KServe's answers always carry an id
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = OnnxModel(args.model_name, args.model_path, args.threads)
    model.load()
    server = ModelServer()
    # Its fastest: no access log line per request (uvicorn writes one when its logger has handlers),
    # and no two timing lines per request from KServe's timing middleware (the kserve.trace logger)
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
