"""Thin routes: KServe v2 REST plus the image call; all logic lives in the data plane and codec.

The v2 infer call is served twice over, identically: by `InferEndpoint`, a bare ASGI endpoint
in front of FastAPI's router that takes every POST to an infer path, and by the `infer` route,
which documents it in the OpenAPI schema. For a small model FastAPI's route matching and
dependency solving cost more than the rest of the request, so the hot path skips them.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from dataclasses import asdict
from typing import Annotated

import orjson
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from cxr_model.answer import Classification, RoutedClassification
from cxr_model.images import ImageError
from inference import codec, metrics
from inference.dataplane import DataPlane
from inference.errors import BadRequest, InferenceError, NotAuthorized, PayloadTooLarge, error_body, status_of
from inference.protocol import ErrorResponse, MetadataModelResponse, MetadataServerResponse

log = logging.getLogger(__name__)


async def get_dataplane(request: Request) -> DataPlane:  # async: no thread-pool hop for a lookup
    return request.app.state.dataplane


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]


async def read_body(request: Request) -> bytes:
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    return bytes(body)


Body = Annotated[bytes, Depends(read_body)]


def _errors(*statuses: int) -> dict:
    """The error answers a route documents (what the app's exception handlers send)."""
    return {status: {"model": ErrorResponse} for status in statuses}


_MODEL_ERRORS = _errors(400, 404)
# JSON up to this size is decoded on the event loop: a binary request's header, small JSON tensors
_INLINE_DECODE_BYTES = 64 * 1024
_CALL_ERRORS = _errors(400, 404, 413, 415, 503, 504)

router = APIRouter(prefix="/v2")
ops_router = APIRouter()


@router.get("", response_model=MetadataServerResponse)
def server_metadata(dataplane: DataPlaneDep):
    return dataplane.server_metadata()


@router.get("/health/live")
def live(dataplane: DataPlaneDep):
    return {"live": dataplane.live()}


@router.get("/health/ready", responses={503: {"description": "Not ready"}})
def ready(dataplane: DataPlaneDep):
    is_ready = dataplane.ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}", response_model=MetadataModelResponse, responses=_MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}", response_model=MetadataModelResponse, responses=_MODEL_ERRORS)
def model_metadata(dataplane: DataPlaneDep, name: str, version: str | None = None):
    return dataplane.model_metadata(name, version)


@router.get("/models/{name}/ready", responses=_MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}/ready", responses=_MODEL_ERRORS)
def model_ready(dataplane: DataPlaneDep, name: str, version: str | None = None):
    return {"name": name, "ready": dataplane.model_ready(name, version)}


@router.post("/models/{name}/infer", responses=_CALL_ERRORS)
@router.post("/models/{name}/versions/{version}/infer", responses=_CALL_ERRORS)
async def infer(dataplane: DataPlaneDep, request: Request, body: Body, name: str, version: str | None = None):
    """JSON tensors, or a JSON header plus binary tensors (binary tensor data extension)."""
    content, binary_header_length = await answer_infer(
        dataplane, body, request.headers.get(codec.HEADER_LENGTH), name, version
    )
    if binary_header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={codec.HEADER_LENGTH: str(binary_header_length)}
    )


async def answer_infer(
    dataplane: DataPlane, body: bytes, header_length: str | None, name: str, version: str | None
) -> tuple[bytes, int | None]:
    """The infer call: the response body, and its JSON header's length when it carries binary outputs."""
    with _Measured("infer", name, version) as measured:
        if codec.json_length(body, header_length) <= _INLINE_DECODE_BYTES:
            infer_request = codec.decode_request(body, header_length)
        else:  # a large JSON document would hold up the event loop
            infer_request = await to_thread.run_sync(codec.decode_request, body, header_length)
        result = measured.result = await dataplane.infer(name, version, infer_request)
        return codec.encode_response(result, infer_request)


_INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
_JSON = [(b"content-type", b"application/json")]
_BINARY = (b"content-type", b"application/octet-stream")
_HEADER_LENGTH = codec.HEADER_LENGTH.lower().encode()


class InferEndpoint:
    """POST /v2/models/{name}[/versions/{version}]/infer as a bare ASGI endpoint; the rest goes on to `app`.

    It answers as the `infer` route does: the same call (`answer_infer`), the same body limit,
    the same error bodies as the app's exception handlers.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or (match := _INFER_PATH.fullmatch(scope["path"])) is None
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        declared, header_length = None, None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == _HEADER_LENGTH:
                header_length = value.decode("latin-1")
        try:
            body = await _receive_body(receive, declared, state.settings.max_body_bytes)
            if body is None:
                return  # the client went away
            content, binary_header_length = await answer_infer(
                state.dataplane, body, header_length, match["name"], match["version"]
            )
        except Exception as exc:
            if not isinstance(exc, InferenceError | ImageError):
                log.exception("unexpected error", exc_info=exc)
            await _respond(send, status_of(exc), _JSON, orjson.dumps(error_body(exc)))
            return
        if binary_header_length is None:
            await _respond(send, 200, _JSON, content)
        else:
            await _respond(send, 200, [_BINARY, (_HEADER_LENGTH, b"%d" % binary_header_length)], content)


async def _receive_body(receive, declared: bytes | None, limit: int) -> bytes | None:
    """The request body, at most `limit` bytes (else PayloadTooLarge); None if the client disconnected."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        return body
    buffer = bytearray(body)
    while True:
        if len(buffer) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        message = await receive()
        if message["type"] != "http.request":
            return None
        buffer += message.get("body", b"")
        if not message.get("more_body", False):
            if len(buffer) > limit:
                raise PayloadTooLarge(f"the body exceeds {limit} bytes")
            return bytes(buffer)


async def _respond(send, status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> None:
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", b"%d" % len(content))],
    }
    await send(start)
    await send({"type": "http.response.body", "body": content})


@router.post("/models/{name}/classify", response_model=Classification, responses=_CALL_ERRORS)
@router.post("/models/{name}/versions/{version}/classify", response_model=Classification, responses=_CALL_ERRORS)
async def classify(dataplane: DataPlaneDep, image: Body, name: str, version: str | None = None):
    """The raw bytes of one JPEG, PNG or DICOM file, preprocessed as the model card says."""
    with _Measured("classify", name, version) as measured:
        measured.result = await dataplane.classify_image(name, version, image)
        return measured.result


@router.post("/models/{name}/route", response_model=RoutedClassification, responses=_CALL_ERRORS)
@router.post("/models/{name}/versions/{version}/route", response_model=RoutedClassification, responses=_CALL_ERRORS)
async def route(
    dataplane: DataPlaneDep,
    image: Body,
    name: str,
    version: str | None = None,
    to: Annotated[list[str] | None, Query(description="label:model: where an image with this label goes on to")] = None,
):
    """One image file through this model (e.g. the image-kind model) and on to the model its label is routed
    to (`?to=chest_xray:pneumonia-xray&to=...`): two answers from one upload and one decode."""
    routes = parse_routes(to or [])
    with _Measured("route", name, version) as measured:
        answer = await dataplane.route_image(name, version, image, routes)
        measured.result = answer.routing
        return answer


def parse_routes(pairs: list[str]) -> dict[str, str]:
    routes: dict[str, str] = {}
    for pair in pairs:
        label, separator, model = pair.partition(":")
        if not separator or not label or not model or label in routes:
            raise BadRequest(f"a route is one 'label:model' per label, not {pair!r}")
        routes[label] = model
    return routes


async def require_repository_token(request: Request) -> None:
    """The repository calls change what is served: only a caller holding INFERENCE_REPOSITORY_TOKEN may make them."""
    expected = request.app.state.settings.repository_token
    if not expected:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise NotAuthorized("the repository calls need the repository token (Authorization: Bearer)")


_REPOSITORY = [Depends(require_repository_token)]
_REPOSITORY_ERRORS = _errors(401, 400, 404)


@router.post("/repository/index", dependencies=_REPOSITORY, responses=_errors(401))
async def repository_index(dataplane: DataPlaneDep):
    """Every model version found, READY or UNAVAILABLE with the reason (re-reads the repository)."""
    return [asdict(entry) for entry in await dataplane.repository_index()]


@router.post("/repository/models/{name}/load", dependencies=_REPOSITORY, responses=_REPOSITORY_ERRORS)
async def load_model(dataplane: DataPlaneDep, name: str):
    await dataplane.load_model(name)
    return {}


@router.post("/repository/models/{name}/unload", dependencies=_REPOSITORY, responses=_REPOSITORY_ERRORS)
async def unload_model(dataplane: DataPlaneDep, name: str):
    await dataplane.unload_model(name)
    return {}


@ops_router.get("/metrics", include_in_schema=False)
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


class _Measured:
    """Count and time one inference call by model version and outcome (ok or the HTTP status)."""

    __slots__ = ("endpoint", "name", "result", "started", "version")

    def __init__(self, endpoint: str, name: str, version: str | None):
        self.endpoint, self.name, self.version = endpoint, name, version or ""
        self.result = None  # set by the caller; its model_version names the version that answered

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        outcome = "ok" if exc is None else str(status_of(exc))
        version = self.result.model_version if self.result is not None else self.version
        metrics.request_counter(self.name, version, self.endpoint, outcome).inc()
        metrics.request_latency(self.name, version, self.endpoint).observe(time.perf_counter() - self.started)
        return False
