"""When a dependency is down the gateway answers 503 with Retry-After and stores nothing."""

import time

import httpx
import psycopg
import pytest

from processes import free_port


def row_count(postgres_url) -> int:
    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as connection:
        return connection.execute("SELECT count(*) FROM results").fetchone()[0]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("setting", "code", "check"),
    [("INFERENCE_URL", "inference_unavailable", "inference"), ("S3_ENDPOINT_URL", "storage_unavailable", "storage")],
)
def test_dependency_down_gives_503_quickly_and_stores_nothing(
    gateway_with, postgres_url, s3_server, sample_xrays, setting, code, check
):
    client = gateway_with(**{setting: dead_url()})
    rows, objects = row_count(postgres_url), len(s3_server.keys())

    started = time.monotonic()
    response = client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.text
    assert response.json()["code"] == code
    assert int(response.headers["retry-after"]) > 0
    assert elapsed < 10
    assert (row_count(postgres_url), len(s3_server.keys())) == (rows, objects)
    readiness = client.get("/health/ready")
    assert readiness.status_code == 503 and readiness.json()["checks"][check] is False


def test_ready_when_every_dependency_answers(gateway):
    response = httpx.get(f"{gateway.url}/health/ready")
    assert response.status_code == 200
    checks = {"database": True, "storage": True, "inference": True, "models": True}
    assert response.json() == {"ready": True, "checks": checks}


def test_not_ready_without_the_image_kind_model(gateway_with, sample_xrays):
    client = gateway_with(IMAGE_KIND_MODEL="no-such-image-kind-model")
    readiness = client.get("/health/ready")
    assert readiness.status_code == 503
    assert readiness.json()["checks"] == {"database": True, "storage": True, "inference": True, "models": False}
    response = client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    assert response.status_code == 503 and response.json()["code"] == "image_kind_unavailable"


def test_oversized_upload_is_refused_with_413(gateway_with):
    client = gateway_with(MAX_UPLOAD_BYTES="1000")
    response = client.post("/classify", files={"file": ("big.jpg", b"\xff\xd8\xff" + b"\x00" * 5000)})
    assert response.status_code == 413 and response.json()["code"] == "file_too_large"
