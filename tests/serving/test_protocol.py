"""The inference service as a client sees it: KServe v2 REST over HTTP, real model."""

import base64

import httpx
import numpy as np
import pytest

MODEL = "pneumonia-xray"


@pytest.fixture(scope="module")
def client(inference_url):
    with httpx.Client(base_url=inference_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def test_split(data_dir):
    arrays = np.load(data_dir / "pneumoniamnist" / "pneumoniamnist_28.npz")
    return arrays["test_images"], arrays["test_labels"].ravel()


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    metadata = client.get("/v2").json()
    assert metadata["name"] == "cxr-inference" and "image_classification" in metadata["extensions"]


def test_model_metadata_describes_tensors_with_batch_dimension(client):
    metadata = client.get(f"/v2/models/{MODEL}").json()
    assert metadata["name"] == MODEL and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert metadata["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}
    assert metadata["parameters"]["labels"] == ["normal", "pneumonia"]
    assert client.get(f"/v2/models/{MODEL}/versions/2").json()["parameters"]["version"] == "2"
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}


def test_json_infer_classifies_the_test_split_well(client, test_split):
    images, labels = test_split
    batch = images[:200].astype(np.float32)[..., None]
    request = {
        "id": "req-42",
        "inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    response = client.post(f"/v2/models/{MODEL}/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-42" and body["model_name"] == MODEL and body["model_version"] == "2"
    output = body["outputs"][0]
    assert output["shape"] == [200, 2] and output["datatype"] == "FP32"
    probabilities = np.array(output["data"]).reshape(200, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((probabilities.argmax(axis=1) == labels[:200]).mean())
    assert accuracy > 0.8


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "image", "shape": [1, 28, 28, 1], "datatype": "INT32", "data": [0] * 784}, "must be FP32"),
        ({"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": [0] * 784}, "must have shape"),
        ({"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0] * 10}, "has 10 values"),
        ({"name": "pixels", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0] * 784}, "unknown input"),
        ({"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": ["a"] * 784}, "not FP32"),
    ],
)
def test_bad_tensors_get_400_with_an_error_message(client, tensor, message):
    response = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_model_and_version_get_404(client):
    assert client.get("/v2/models/knee-mri").status_code == 404
    response = client.get(f"/v2/models/{MODEL}/versions/99")
    assert response.status_code == 404 and "no version '99'" in response.json()["error"]


def test_malformed_request_body_gets_400(client):
    response = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": "nope"})
    assert response.status_code == 400 and "invalid request" in response.json()["error"]


def test_image_call_classifies_real_xrays(client, sample_xrays):
    correct, total = 0, 0
    for label, paths in sample_xrays.items():
        for path in paths:
            response = client.post(
                f"/v2/models/{MODEL}/classify", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body["probabilities"]) == {"normal", "pneumonia"}
            assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-5
            assert body["model_version"] == "2" and body["positive_class"] == "pneumonia"
            expected = "pneumonia" if body["probabilities"]["pneumonia"] >= body["threshold"] else "normal"
            assert body["label"] == expected
            correct += body["label"] == label
            total += 1
    assert total == 55
    assert correct / total >= 0.7


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, this is text", 415, "unsupported_media_type"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, 400, "corrupt_image"),
    ],
)
def test_image_call_rejects_what_is_not_an_image(client, payload, status, code):
    response = client.post(f"/v2/models/{MODEL}/classify", content=payload)
    assert response.status_code == status
    assert response.json()["code"] == code


def test_image_call_and_bytes_input_read_dicom(client, data_dir):
    radiograph = (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()
    response = client.post(f"/v2/models/{MODEL}/classify", content=radiograph)
    assert response.status_code == 200, response.text
    classified = response.json()["probabilities"]
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}}
    tensor["data"] = [base64.b64encode(radiograph).decode()]
    request = {"inputs": [tensor], "outputs": [{"name": "probabilities"}]}
    inferred = np.array(client.post(f"/v2/models/{MODEL}/infer", json=request).json()["outputs"][0]["data"])
    # the image call calibrates the graph's probabilities with the card's temperature
    temperature = client.get(f"/v2/models/{MODEL}").json()["parameters"]["calibration"]["temperature"]
    calibrated = np.exp(np.log(inferred) / temperature) / np.exp(np.log(inferred) / temperature).sum()
    assert [classified["normal"], classified["pneumonia"]] == pytest.approx(calibrated.tolist(), abs=1e-6)


def test_dicom_without_pixel_data_is_refused_with_a_code(client, dicom_without_pixels):
    response = client.post(f"/v2/models/{MODEL}/classify", content=dicom_without_pixels)
    assert response.status_code == 400 and response.json()["code"] == "dicom_without_pixel_data"


def test_metrics_count_calls(client):
    client.get(f"/v2/models/{MODEL}")
    client.post(f"/v2/models/{MODEL}/classify", content=b"")
    text = client.get("/metrics").text
    assert 'inference_requests_total{endpoint="classify",model="pneumonia-xray",outcome="' in text


def test_fields_real_clients_send_are_accepted(client):
    """KServe's client repeats the model's name in the body; fields the protocol does not name are ignored."""
    tensor = {"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784, "note": "ignored"}
    body = {
        "id": "req-1",
        "model_name": MODEL,
        "inputs": [tensor],
        "outputs": [{"name": "probabilities", "comment": "ignored"}],
        "trace": {"span": "ignored"},
    }
    for path, version in ((f"/v2/models/{MODEL}/infer", None), (f"/v2/models/{MODEL}/versions/2/infer", "2")):
        response = client.post(path, json=body | ({"model_version": version} if version else {}))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == "req-1" and response.json()["model_version"] == "2"
    # with no version in the path, the body's model_version names it
    assert client.post(f"/v2/models/{MODEL}/infer", json=body | {"model_version": "2"}).status_code == 200
    response = client.post(f"/v2/models/{MODEL}/infer", json=body | {"model_version": "99"})
    assert response.status_code == 404 and "no version '99'" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        (f"/v2/models/{MODEL}/infer", {"model_name": "knee-mri"}, "model_name 'knee-mri' is not the model in the path"),
        (
            f"/v2/models/{MODEL}/versions/2/infer",
            {"model_version": "1"},
            "model_version '1' is not the version in the path",
        ),
        (f"/v2/models/{MODEL}/infer", {"model_name": 7}, "model_name: must be a string"),
        (f"/v2/models/{MODEL}/infer", {"id": ["x"]}, "id: must be a string"),
        (f"/v2/models/{MODEL}/infer", {"outputs": [{"parameters": {}}]}, "outputs.0: must be an object with a name"),
    ],
)
def test_body_fields_that_contradict_the_path_or_the_protocol_get_400(client, path, fields, message):
    tensor = {"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}
    response = client.post(path, json={"inputs": [tensor]} | fields)
    assert response.status_code == 400 and message in response.json()["error"]
