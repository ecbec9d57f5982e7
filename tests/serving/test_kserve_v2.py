"""The running service through the official KServe v2 / Triton HTTP client."""

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from cxr_model.card import ModelCard
from cxr_model.preprocessing import preprocess_array

MODEL = "pneumonia-xray"
COMMITTED_MODEL = Path(__file__).resolve().parents[2] / "models" / MODEL / "2"


@pytest.fixture(scope="module")
def client(inference_url):
    client = triton.InferenceServerClient(inference_url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def xray_batch(data_dir) -> np.ndarray:
    arrays = np.load(data_dir / "pneumoniamnist" / "pneumoniamnist_28.npz")
    return arrays["test_images"][:16].astype(np.float32)[..., None]


def infer(client, batch: np.ndarray, binary_inputs: bool, binary_outputs: bool, **kwargs) -> triton.InferResult:
    tensor = triton.InferInput("image", list(batch.shape), "BYTES" if batch.dtype == object else "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary_inputs)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary_outputs)]
    return client.infer(MODEL, [tensor], outputs=outputs, **kwargs)


def test_health_and_readiness(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready("knee-mri") and not client.is_model_ready(MODEL, "99")


def test_server_and_model_metadata(client):
    server = client.get_server_metadata()
    assert server["name"] == "cxr-inference"
    assert {"binary_tensor_data", "model_repository"} <= set(server["extensions"])
    model = client.get_model_metadata(MODEL)
    assert model["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert model["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}
    assert [output["name"] for output in model["outputs"][1:]] == ["class_activation", "ood_score"]
    assert client.get_model_metadata(MODEL, "2")["parameters"]["version"] == "2"
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata(MODEL, "99")
    assert error.value.status() == "404" and "no version '99'" in error.value.message()


@pytest.mark.parametrize(("binary_inputs", "binary_outputs"), [(False, True), (True, False), (True, True)])
def test_binary_tensors_give_exactly_the_json_results(client, xray_batch, binary_inputs, binary_outputs):
    reference = infer(client, xray_batch, False, False).as_numpy("probabilities")
    result = infer(client, xray_batch, binary_inputs, binary_outputs, request_id="req-7")
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_version"] == "2"
    np.testing.assert_array_equal(result.as_numpy("probabilities"), reference)
    assert reference.shape == (16, 2) and reference.dtype == np.float32


def test_without_outputs_all_come_back_in_binary(client, xray_batch):
    tensor = triton.InferInput("image", list(xray_batch.shape), "FP32")
    tensor.set_data_from_numpy(xray_batch)
    result = client.infer(MODEL, [tensor], model_version="2")
    output = result.get_output("probabilities")
    assert output["parameters"]["binary_data_size"] == 16 * 2 * 4
    np.testing.assert_array_equal(result.as_numpy("probabilities"), infer(client, xray_batch, False, False).as_numpy("probabilities"))


def test_bytes_input_carries_image_files_preprocessed_like_training(client, inference_url, sample_xrays):
    paths = sample_xrays["normal"][:3] + sample_xrays["pneumonia"][:3]
    files = np.array([path.read_bytes() for path in paths], dtype=object)
    card = ModelCard.read(COMMITTED_MODEL)
    arrays = np.stack([preprocess_array(np.asarray(Image.open(path)), card.preprocessing) for path in paths])
    expected = infer(client, arrays, True, True).as_numpy("probabilities")

    np.testing.assert_array_equal(infer(client, files, True, True).as_numpy("probabilities"), expected)
    # in JSON, binary files travel as base64 strings
    tensor = {"name": "image", "shape": [len(files)], "datatype": "BYTES", "parameters": {"content_type": "base64"}}
    tensor["data"] = [base64.b64encode(data).decode() for data in files]
    response = httpx.post(f"{inference_url}/v2/models/{MODEL}/infer", json={"inputs": [tensor]}, timeout=30)
    assert response.status_code == 200, response.text
    probabilities = np.array(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(-1, 2)
    np.testing.assert_array_equal(probabilities, expected)


@pytest.mark.parametrize(
    ("datatype", "shape", "values", "message"),
    [
        ("INT32", [1, 28, 28, 1], np.zeros((1, 28, 28, 1), np.int32), "must be FP32"),
        ("UINT8", [1, 28, 28, 1], np.zeros((1, 28, 28, 1), np.uint8), "must be FP32"),
        ("BOOL", [1, 28, 28, 1], np.zeros((1, 28, 28, 1), np.bool_), "must be FP32"),
        ("FP32", [1, 28, 28], np.zeros((1, 28, 28), np.float32), "must have shape"),
    ],
)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tensors_the_model_does_not_take_are_refused(client, datatype, shape, values, message, binary):
    tensor = triton.InferInput("image", shape, datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [tensor])
    assert error.value.status() == "400" and message in error.value.message()


def test_unknown_model_and_output(client, xray_batch):
    tensor = triton.InferInput("image", list(xray_batch.shape), "FP32")
    tensor.set_data_from_numpy(xray_batch)
    with pytest.raises(InferenceServerException) as error:
        client.infer("knee-mri", [tensor])
    assert error.value.status() == "404"
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("logits")])
    assert error.value.status() == "400" and "unknown outputs" in error.value.message()


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        (b'{"inputs": [', {}, "invalid request"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "abc"}, "not a length"),
        (
            b'{"inputs":[{"name":"image","shape":[1,28,28,1],"datatype":"FP32","parameters":{"binary_data_size":8}}]}'
            + b"\0" * 8,
            {"Inference-Header-Content-Length": "103"},
            "needs 3136",
        ),
    ],
)
def test_malformed_bodies_get_400_with_an_error(inference_url, content, headers, message):
    response = httpx.post(f"{inference_url}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]
