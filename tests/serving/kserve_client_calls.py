"""Calls to a v2 server through KServe's own Python SDK client (`kserve.InferenceRESTClient`).

Run by test_kserve_client.py in the KServe environment the peer benchmark makes (`kserve`
cannot be installed next to the services' pins): reads {"url", "model", "images"} as JSON
on stdin and prints what the client got back as JSON on stdout.
"""

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


def request(model: str, images: np.ndarray, binary: bool, body_model: str | None = None) -> InferRequest:
    tensor = InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [RequestedOutput("probabilities", parameters={"binary_data": binary})]
    return InferRequest(
        body_model or model, [tensor], request_id=f"kserve-{'binary' if binary else 'json'}", request_outputs=outputs
    )


async def calls(url: str, model: str, images: np.ndarray) -> dict:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    found: dict = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, model),
        "unknown_model_ready": await client.is_model_ready(url, "knee-mri"),
    }
    for binary in (False, True):
        response = await client.infer(url, request(model, images, binary), model_name=model)
        output = response.outputs[0]
        found["binary" if binary else "json"] = {
            "id": response.id,
            "model_name": response.model_name,
            "model_version": response.model_version,
            "output": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
            "probabilities": output.as_numpy().tolist(),
        }
    try:  # the body names another model than the path
        await client.infer(url, request(model, images, False, body_model="knee-mri"), model_name=model)
        found["mismatch"] = None
    except httpx.HTTPStatusError as error:
        found["mismatch"] = {"status": error.response.status_code, "error": error.response.json()["error"]}
    await client.close()
    return found


def main() -> None:
    given = json.load(sys.stdin)
    images = np.asarray(given["images"], dtype=np.float32)
    print(json.dumps(asyncio.run(calls(given["url"], given["model"], images))))


if __name__ == "__main__":
    main()
