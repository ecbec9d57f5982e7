"""JSON logs, request ids and Prometheus metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
log = logging.getLogger("gateway.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any `extra` fields a call passes."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {key: value for key, value in vars(record).items() if key not in self._STANDARD}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines in the same format
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # `RequestObservation` logs each request: no access line from uvicorn besides (uvicorn writes one whenever
    # this logger has handlers, its own or the root's through propagation, whatever --no-access-log said)
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time to answer HTTP requests",
            ["method", "route"],
            registry=self.registry,
        )
        self.classifications = Counter(
            "gateway_classifications", "Stored classifications", ["model", "label"], registry=self.registry
        )
        self.unusual_images = Counter(
            "gateway_unusual_images",
            "Stored classifications of images the model's out-of-distribution check flagged as unusual",
            ["model"],
            registry=self.registry,
        )
        self.intended_use_refusals = Counter(
            "gateway_intended_use_refusals",
            "Images refused before any classifier ran, as outside the intended use, by the refusal's code",
            ["code"],
            registry=self.registry,
        )
        self.shared_limit_fallbacks = Counter(
            "gateway_shared_limit_fallbacks",
            "Limit checks made without Redis because it could not be reached",
            ["limit"],
            registry=self.registry,
        )

    def count_classification(self, model: str, label: str, unusual: bool | None) -> Callable[[], None]:
        """What counts one stored classification (run once it is committed)."""
        counters = [self.classifications.labels(model, label)]
        if unusual:
            counters.append(self.unusual_images.labels(model))

        def count() -> None:
            for counter in counters:
                counter.inc()

        return count


def _valid_request_id(value: str | None) -> str | None:
    """A caller's request id is kept only if it is short and plain (it goes into logs and the audit trail)."""
    return value if value and _REQUEST_ID.match(value) else None


class RequestObservation:
    """Gives each request an id (the caller's X-Request-ID or a new one), echoes it, logs and measures the request.

    Plain ASGI rather than `@app.middleware("http")`, which runs every request through an
    extra task and a memory stream pair, a cost paid on each classification.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _valid_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # when the app fails before it starts a response
        started = time.perf_counter()
        observed = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, observed
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # logged and counted before the last byte leaves: a caller that has its answer finds both
                observed = True
                self._observe(scope, status, time.perf_counter() - started, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            if not observed:
                self._observe(scope, status, time.perf_counter() - started, request_id)

    def _observe(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        method = scope["method"]
        route = getattr(scope.get("route"), "path", "unmatched")  # the template, not the raw path
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(elapsed)
        log.info(
            "%s %s %s",
            method,
            route,
            status,
            extra={
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
            },
        )
