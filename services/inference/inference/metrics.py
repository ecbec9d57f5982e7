"""Prometheus metrics, served at /metrics."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "inference_requests",
    "Inference calls by model, endpoint and outcome",
    ["model", "endpoint", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "inference_request_duration_seconds",
    "Time spent answering an inference call",
    ["model", "endpoint"],
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
