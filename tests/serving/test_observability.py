"""Request ids in responses and JSON logs; metrics per model and version."""

import json
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "pneumonia-xray"
REPOSITORY = Path(__file__).resolve().parents[2] / "models"


def test_request_id_is_echoed_or_made_and_logged_as_json(inference_url, logs_dir, sample_xrays):
    request_id = f"test-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{inference_url}/v2/models/{MODEL}/classify",
        content=sample_xrays["normal"][0].read_bytes(),
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 200 and response.headers["X-Request-ID"] == request_id
    generated = httpx.get(f"{inference_url}/v2/health/live").headers["X-Request-ID"]
    assert len(generated) == 32 and generated != request_id

    written = (logs_dir / "inference.log").read_text().split("\n")[:-1]  # without a line still being written
    lines = [json.loads(line) for line in written if line.startswith("{")]
    mine = [line for line in lines if line["request_id"] == request_id]
    assert mine and mine[-1]["path"] == f"/v2/models/{MODEL}/classify" and mine[-1]["status"] == 200
    assert {"time", "level", "logger", "message", "duration_ms"} <= set(mine[-1])


def test_metrics_cover_requests_errors_latency_queue_and_batches(inference_url, sample_xrays):
    httpx.post(f"{inference_url}/v2/models/{MODEL}/classify", content=sample_xrays["normal"][0].read_bytes())
    httpx.post(f"{inference_url}/v2/models/{MODEL}/classify", content=b"not an image")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(httpx.get(f"{inference_url}/metrics").text)
        for sample in family.samples
    }
    labels = (("endpoint", "classify"), ("model", MODEL))
    assert samples[("inference_requests_total", (*labels, ("outcome", "ok"), ("version", "2")))] >= 1
    assert samples[("inference_requests_total", (*labels, ("outcome", "415"), ("version", "")))] >= 1
    assert samples[("inference_request_duration_seconds_count", (*labels, ("version", "2")))] >= 1
    assert samples[("inference_queue_duration_seconds_count", (("model", MODEL), ("version", "2")))] >= 1
    assert samples[("inference_batch_size_count", (("model", MODEL), ("version", "2")))] >= 1


@pytest.mark.parametrize("access_log", ["--no-access-log", "--access-log"])
def test_each_request_is_logged_once_whatever_uvicorn_is_told(tmp_path, sample_xrays, access_log):
    """The middleware's JSON line, and no uvicorn access line besides (it came back despite --no-access-log)."""
    from processes import ServiceProcess, free_port, uvicorn_args

    port = free_port()
    args = [arg for arg in uvicorn_args("inference.app:create_app", port) if arg != "--no-access-log"] + [access_log]
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "inference.log"
    service = ServiceProcess(
        "inference", args, {"INFERENCE_MODEL_REPOSITORY": str(REPOSITORY)}, f"{url}/v2/health/ready", log_path
    )
    service.start()
    ids = {kind: f"{kind}-{uuid.uuid4().hex}" for kind in ("infer", "classify", "metadata", "not-found")}
    try:
        tensor = {"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}
        calls = {
            "infer": lambda headers: httpx.post(
                f"{url}/v2/models/{MODEL}/infer", json={"inputs": [tensor]}, headers=headers
            ),
            "classify": lambda headers: httpx.post(
                f"{url}/v2/models/{MODEL}/classify", content=sample_xrays["normal"][0].read_bytes(), headers=headers
            ),
            "metadata": lambda headers: httpx.get(f"{url}/v2/models/{MODEL}", headers=headers),
            "not-found": lambda headers: httpx.post(
                f"{url}/v2/models/knee-mri/infer", json={"inputs": [tensor]}, headers=headers
            ),
        }
        statuses = {kind: call({"X-Request-ID": ids[kind]}).status_code for kind, call in calls.items()}
    finally:
        service.stop()
    assert statuses == {"infer": 200, "classify": 200, "metadata": 200, "not-found": 404}
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one of ours: JSON
    assert not [record for record in records if record["logger"] == "uvicorn.access"]
    for kind, request_id in ids.items():
        mine = [record for record in records if request_id in json.dumps(record)]
        assert len(mine) == 1, (kind, mine)
        assert mine[0]["request_id"] == request_id and mine[0]["status"] == statuses[kind]
