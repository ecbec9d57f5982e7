"""Serve the clinician web app locally the way nginx does in production.

Static files from static/ at /, the API gateway under /api (prefix stripped, bodies
streamed both ways), GET /healthz, and the same security headers as nginx.
"""

from __future__ import annotations

import argparse
import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The same as nginx/default.conf.template sends; keep the two in step.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
}  # fmt: skip
# Like nginx, the proxy sends its own Date and Server headers instead of the upstream's.
NOT_FORWARDED_FROM_UPSTREAM = HOP_BY_HOP | {"date", "server"}


def gateway_unavailable() -> Response:
    body = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the API gateway cannot be reached",
        "code": "gateway_unavailable",
    }
    headers = {"Retry-After": "5"}
    return Response(json.dumps(body), 503, headers, media_type="application/problem+json")


async def proxy(request: Request) -> Response:
    client: httpx.AsyncClient = request.app.state.upstream
    headers = [(k, v) for k, v in request.headers.items() if k not in HOP_BY_HOP and k != "host"]
    client_host = request.client.host if request.client else ""
    headers += [("x-forwarded-for", client_host), ("x-forwarded-proto", request.url.scheme)]
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    # The raw (still percent-encoded) path, so the gateway sees exactly what the browser sent.
    raw_path = request.scope["raw_path"].removeprefix(b"/api")
    if request.scope["query_string"]:
        raw_path += b"?" + request.scope["query_string"]
    upstream_request = client.build_request(
        request.method,
        httpx.URL(raw_path=raw_path),
        headers=headers,
        content=request.stream() if has_body else None,
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.HTTPError:
        return gateway_unavailable()
    response = StreamingResponse(upstream.aiter_raw(), upstream.status_code, background=BackgroundTask(upstream.aclose))
    response.raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in upstream.headers.multi_items()
        if k not in NOT_FORWARDED_FROM_UPSTREAM
    ]
    return response


class SecurityHeaders:
    """ASGI middleware: the security headers on every response that does not set its own."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.decode("latin-1").lower() for k, _ in message["headers"]}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k not in present]
                message = {**message, "headers": [*message["headers"], *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def create_app(api_upstream: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette):
        # Reads wait as long as nginx's default proxy_read_timeout: classification can be slow.
        async with httpx.AsyncClient(base_url=api_upstream, timeout=httpx.Timeout(60, connect=5)) as client:
            app.state.upstream = client
            yield

    return Starlette(
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        routes=[
            Route("/healthz", lambda _: PlainTextResponse("ok"), methods=["GET", "HEAD"]),
            # like nginx: the gateway's metrics are for the cluster's scraper, not the public
            Route("/api/metrics", lambda _: PlainTextResponse("not found", 404), methods=["GET", "HEAD"]),
            Route("/api/{path:path}", proxy, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True)),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-upstream", default="http://127.0.0.1:8000", help="the API gateway's base URL")
    args = parser.parse_args()
    uvicorn.run(create_app(args.api_upstream.rstrip("/")), host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
