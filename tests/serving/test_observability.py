"""Request ids in responses and JSON logs; metrics per model and version."""

import json
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

MODEL = "pneumonia-xray"


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

    lines = [json.loads(line) for line in (logs_dir / "inference.log").read_text().splitlines() if line.startswith("{")]
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
