"""The repository calls (index, load, unload) need the shared token; S3 keys cannot leave the mirror."""

import uuid

import httpx
import pytest

from test_repository import COMMITTED_MODEL, COMMITTED_VERSION

MODEL = "pneumonia-xray"
CALLS = ("/v2/repository/index", f"/v2/repository/models/{MODEL}/unload", f"/v2/repository/models/{MODEL}/load")


def test_repository_calls_need_the_token_and_inference_does_not(start_inference, sample_xrays):
    token = uuid.uuid4().hex
    url = start_inference({"INFERENCE_REPOSITORY_TOKEN": token})
    for path in CALLS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
            refused = httpx.post(url + path, headers=headers)
            assert refused.status_code == 401, (path, headers)
            assert refused.json()["code"] == "repository_token_required"
    assert httpx.get(f"{url}/v2/models/{MODEL}/ready").json()["ready"]  # nothing was unloaded
    for path in CALLS:
        assert httpx.post(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60).status_code == 200
    image = sample_xrays["normal"][0].read_bytes()
    assert httpx.post(f"{url}/v2/models/{MODEL}/classify", content=image, timeout=60).status_code == 200


@pytest.mark.parametrize(
    "hostile",
    ["../../escaped.txt", "m/../../../escaped.txt", "/escaped.txt", "m/./../escaped.txt", "m//escaped.txt", ".."],
)
def test_an_s3_key_that_would_leave_the_mirror_is_skipped(s3_server, tmp_path, hostile):
    from inference.s3sync import S3Mirror

    s3 = s3_server.client()
    bucket = f"cxr-mirror-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for path in COMMITTED_MODEL.iterdir():
        s3.upload_file(str(path), bucket, f"models/{MODEL}/{COMMITTED_VERSION}/{path.name}")
    s3.put_object(Bucket=bucket, Key=f"models/{hostile}", Body=b"outside")
    root = tmp_path / "cache" / "models"
    root.mkdir(parents=True)
    mirror = S3Mirror(f"s3://{bucket}/models", root, s3_server.endpoint_url)
    mirror.client = s3  # the server's test credentials
    mirror.sync()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f"cache/models/{MODEL}/{COMMITTED_VERSION}/{p.name}" for p in COMMITTED_MODEL.iterdir())
