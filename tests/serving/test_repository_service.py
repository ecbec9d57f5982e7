"""A running service follows its repository (a folder or an S3 prefix) without a restart."""

import json
import shutil
import time

import httpx
import pytest

from test_repository import COMMITTED_MODEL, COMMITTED_VERSION, copy_version

MODEL = "pneumonia-xray"


@pytest.fixture
def start_service(start_inference):
    return lambda env: httpx.Client(base_url=start_inference(env), timeout=30)


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the service did not pick up the change in time"
        time.sleep(0.2)


def versions(client: httpx.Client) -> list[str]:
    response = client.get(f"/v2/models/{MODEL}")
    return response.json()["versions"] if response.status_code == 200 else []


def test_polling_picks_up_new_and_removed_versions(start_service, tmp_path):
    root = tmp_path / "repository"
    copy_version(root, "1")
    client = start_service({"INFERENCE_MODEL_REPOSITORY": str(root), "INFERENCE_REPOSITORY_POLL_SECONDS": "0.3"})
    assert versions(client) == ["1"]

    copy_version(root, "2")
    wait_for(lambda: versions(client) == ["1", "2"])
    assert client.get(f"/v2/models/{MODEL}").json()["parameters"]["version"] == "2"

    shutil.rmtree(root / MODEL / "1")
    wait_for(lambda: versions(client) == ["2"])
    assert client.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 404


def test_repository_extension_index_load_and_unload(start_service, tmp_path):
    root = tmp_path / "repository"
    copy_version(root, "1")
    client = start_service({"INFERENCE_MODEL_REPOSITORY": str(root)})

    broken = copy_version(root, "2")
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    index = client.post("/v2/repository/index").json()
    assert [(entry["version"], entry["state"]) for entry in index] == [("1", "READY"), ("2", "UNAVAILABLE")]
    assert "sha256" in index[1]["reason"]
    assert client.get("/v2/health/ready").status_code == 200  # one broken version is not fatal

    assert client.post(f"/v2/repository/models/{MODEL}/unload").status_code == 200
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 404
    assert client.post("/v2/repository/models/knee-mri/load").status_code == 404

    shutil.copy(COMMITTED_MODEL / "model.onnx", broken / "model.onnx")
    assert client.post(f"/v2/repository/models/{MODEL}/load").status_code == 200
    assert versions(client) == ["1", "2"]


def test_an_s3_prefix_serves_as_the_repository(start_service, s3_server, sample_xrays):
    s3 = s3_server.client()
    bucket = "cxr-models-test"
    s3.create_bucket(Bucket=bucket)
    for path in COMMITTED_MODEL.iterdir():
        s3.upload_file(str(path), bucket, f"serving/models/{MODEL}/{COMMITTED_VERSION}/{path.name}")
    client = start_service(
        {
            "INFERENCE_MODEL_REPOSITORY": f"s3://{bucket}/serving/models",
            "INFERENCE_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    image = sample_xrays["pneumonia"][0].read_bytes()
    response = client.post(f"/v2/models/{MODEL}/classify", content=image)
    assert response.status_code == 200 and response.json()["model_version"] == COMMITTED_VERSION

    # a new version uploaded, and the first one deleted, are picked up by the index call
    new_version = str(int(COMMITTED_VERSION) + 1)
    card = json.loads((COMMITTED_MODEL / "model.json").read_text()) | {"version": new_version}
    s3.put_object(Bucket=bucket, Key=f"serving/models/{MODEL}/{new_version}/model.json", Body=json.dumps(card).encode())
    s3.upload_file(str(COMMITTED_MODEL / "model.onnx"), bucket, f"serving/models/{MODEL}/{new_version}/model.onnx")
    for name in ("model.json", "model.onnx"):
        s3.delete_object(Bucket=bucket, Key=f"serving/models/{MODEL}/{COMMITTED_VERSION}/{name}")
    index = client.post("/v2/repository/index").json()
    assert [(entry["version"], entry["state"]) for entry in index] == [(new_version, "READY")]
    response = client.post(f"/v2/models/{MODEL}/classify", content=image)
    assert response.status_code == 200 and response.json()["model_version"] == new_version


def test_the_official_client_drives_the_repository_extension(start_inference, tmp_path):
    import tritonclient.http as triton

    root = tmp_path / "repository"
    copy_version(root, "1")
    client = triton.InferenceServerClient(start_inference({"INFERENCE_MODEL_REPOSITORY": str(root)}).removeprefix("http://"))
    copy_version(root, "2")
    assert [(entry["version"], entry["state"]) for entry in client.get_model_repository_index()] == [
        ("1", "READY"),
        ("2", "READY"),
    ]
    client.unload_model(MODEL)
    assert not client.is_model_ready(MODEL)
    client.load_model(MODEL)
    assert client.is_model_ready(MODEL, "2")
    client.close()
