"""A minimal onnxruntime runtime for MLServer (the peer benchmark's MLServer row).

The benchmark writes MLServer's `settings.json` and the model's `model-settings.json`
(implementation `mlserver_onnx.OnnxRuntime`, `parameters.uri` the ONNX file, `extra.threads`)
and starts `mlserver start` with this folder on PYTHONPATH. The runtime is what an MLServer
user would write: `predict` runs on MLServer's event loop (parallel_workers 0: in-process, its
fastest), tensors go through MLServer's NumpyCodec both ways.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from onnx_session import session_options


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        parameters = self.settings.parameters
        assert parameters is not None and parameters.uri is not None
        threads = int((parameters.extra or {}).get("threads", 1))
        self.session = ort.InferenceSession(
            parameters.uri, session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.output_names = [node.name for node in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        names = [output.name for output in payload.outputs] if payload.outputs else self.output_names
        values = self.session.run(names, feeds)
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(value)) for name, value in zip(names, values, strict=True)
            ],
        )
