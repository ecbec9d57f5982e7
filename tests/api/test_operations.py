"""Probes, metrics, request ids, JSON logs, per-caller rate limits and CORS."""

import json
import re
import time
import uuid

import httpx

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_health_aliases(gateway):
    assert httpx.get(f"{gateway.url}/healthz").json() == {"live": True}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_metrics_count_requests_by_route_template(admin_client, sample_xrays):
    admin_client.get("/results/00000000-0000-0000-0000-000000000000")
    classified = admin_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    label, model = classified.json()["label"], classified.json()["model_name"]
    response = admin_client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert re.search(
        r'gateway_http_requests_total\{method="GET",route="/results/\{result_id\}",status="404"\} [1-9]', response.text
    )
    assert "gateway_http_request_duration_seconds_bucket" in response.text
    assert re.search(rf'gateway_classifications_total\{{label="{label}",model="{model}"\}} [1-9]', response.text)


def test_request_ids_are_generated_echoed_and_passed_to_inference(admin_client, sample_xrays, logs_dir):
    assert re.fullmatch(r"[0-9a-f]{32}", admin_client.get("/me").headers["x-request-id"])
    assert admin_client.get("/me", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"] != "bad id"

    request_id = f"trace-{uuid.uuid4().hex}"
    response = admin_client.post(
        "/classify",
        files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())},
        headers={"X-Request-ID": request_id},
    )

    assert response.headers["x-request-id"] == request_id
    inference_lines = [
        json.loads(line) for line in (logs_dir / "inference.log").read_text().splitlines() if line.startswith("{")
    ]
    route = "/v2/models/image-kind/route"  # the image-kind model, then the classifier, in one call
    assert any(line.get("request_id") == request_id and line.get("path") == route for line in inference_lines)


def test_gateway_logs_are_json_lines_with_the_request_id(admin_client, logs_dir):
    request_id = f"log-{uuid.uuid4().hex}"
    admin_client.get("/me", headers={"X-Request-ID": request_id})
    lines = [json.loads(line) for line in (logs_dir / "gateway.log").read_text().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line.get("request_id") == request_id]
    assert logged and logged[0]["route"] == "/me" and logged[0]["status"] == 200


def test_each_request_is_logged_once(admin_client, logs_dir):
    """The gateway's own line, and no uvicorn access line besides (it came back despite --no-access-log)."""
    marker = f"once-{uuid.uuid4().hex}"
    for _ in range(3):
        admin_client.get("/me", params={"marker": marker})
    log_text = (logs_dir / "gateway.log").read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert log_text.count(marker) == 0  # query strings (which may carry references) are not logged
    assert len([line for line in lines if line["logger"] == "gateway.access" and line.get("route") == "/me"]) >= 3


def wait_for_a_fresh_window(margin: float = 3.0) -> None:
    """Rate limits count per clock minute; start a short burst well inside one."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.1)


def statuses(client, count: int) -> list[int]:
    return [client.get("/me").status_code for _ in range(count)]


def test_callers_over_their_limit_get_429_with_retry_after(gateway_with):
    client = gateway_with(RATE_LIMIT_PER_MINUTE="3")
    wait_for_a_fresh_window()
    assert statuses(client, 3) == [200, 200, 200]
    limited = client.get("/me")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 0 < int(limited.headers["retry-after"]) <= 60


def test_the_redis_limit_is_shared_by_replicas(gateway_with):
    first = gateway_with(RATE_LIMIT_PER_MINUTE="3", REDIS_URL=REDIS_URL)
    second = gateway_with(RATE_LIMIT_PER_MINUTE="3", REDIS_URL=REDIS_URL)
    second.headers["Authorization"] = first.headers["Authorization"]  # one caller, two replicas
    wait_for_a_fresh_window()
    assert statuses(first, 2) + statuses(second, 2) == [200, 200, 200, 429]


def test_cors_allows_only_the_configured_frontend(gateway, gateway_with):
    client = gateway_with(CORS_ORIGINS="https://frontend.example, https://other.example")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}

    allowed = client.options("/classify", headers={"Origin": "https://frontend.example", **preflight})
    refused = client.options("/classify", headers={"Origin": "https://evil.example", **preflight})

    assert allowed.headers["access-control-allow-origin"] == "https://frontend.example"
    assert "access-control-allow-origin" not in refused.headers
    unconfigured = httpx.get(f"{gateway.url}/health/live", headers={"Origin": "https://frontend.example"})
    assert "access-control-allow-origin" not in unconfigured.headers
