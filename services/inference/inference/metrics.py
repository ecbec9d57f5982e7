"""Prometheus metrics, served at /metrics."""

from functools import lru_cache

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "inference_requests",
    "Inference calls by model, version, endpoint and outcome (ok or the HTTP status)",
    ["model", "version", "endpoint", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "inference_request_duration_seconds",
    "Time spent answering an inference call",
    ["model", "version", "endpoint"],
    registry=REGISTRY,
)
QUEUE_TIME = Histogram(
    "inference_queue_duration_seconds",
    "Time a request waited for its batch to start",
    ["model", "version"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "inference_batch_size",
    "Rows per onnxruntime call made by the dynamic batcher",
    ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)


# The labelled series of a call, looked up once: `labels()` takes a lock and builds a key each time.
# Bounded: model names come from request paths.
@lru_cache(maxsize=1024)
def request_counter(model: str, version: str, endpoint: str, outcome: str):
    return REQUESTS.labels(model, version, endpoint, outcome)


@lru_cache(maxsize=1024)
def request_latency(model: str, version: str, endpoint: str):
    return LATENCY.labels(model, version, endpoint)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
