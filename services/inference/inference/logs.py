"""JSON log lines, each with the id of the request it belongs to (X-Request-ID).

Every request is logged once, by `RequestIdMiddleware`. uvicorn's access log would log it a
second time, in another format: `configure_logging` keeps it off whatever uvicorn was told.
"""

from __future__ import annotations

import logging
import random
import time
from contextvars import ContextVar

import orjson

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode()
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
log = logging.getLogger("inference.requests")


class JsonFormatter(logging.Formatter):
    _second, _second_text = -1, ""  # the last second formatted: many lines share it

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        line = {
            "time": self._second_text,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The middleware logs each request: no access log line from uvicorn besides (uvicorn writes one
    # only while this logger has handlers, its own or the root's through propagation).
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


def _log_request(method: str, path: str, status: int, started: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    # makeRecord and handle: what log.info does, without looking up the caller's source line
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "request", (), None, extra={"fields": fields}))


class RequestIdMiddleware:
    """Takes X-Request-ID from the request or makes one, echoes it, logs one line per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        current = None
        for key, value in scope["headers"]:
            if key == _REQUEST_ID_KEY:
                current = value.decode("latin-1")[:200]
                break
        # 128 random bits from the process's generator (seeded from the OS at start): os.urandom, which
        # uuid4 calls, would let go of the GIL, and the batcher's thread would take it, on every request
        current = current or f"{random.getrandbits(128):032x}"
        token = request_id.set(current)
        echoed = (_REQUEST_ID_NAME, current.encode("latin-1"))
        started, status, logged = time.perf_counter(), 500, False

        async def send_with_id(message):
            nonlocal status, logged
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                logged = True  # before the last byte leaves: a caller that has its answer finds the line
                _log_request(scope["method"], scope["path"], status, started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not logged:
                _log_request(scope["method"], scope["path"], status, started)
            request_id.reset(token)
