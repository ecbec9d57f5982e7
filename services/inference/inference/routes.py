"""Thin routes: KServe v2 REST plus the image call; all logic lives in the data plane and codec."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from cxr_model.answer import Classification
from inference import codec, metrics
from inference.dataplane import DataPlane
from inference.errors import PayloadTooLarge, status_of
from inference.protocol import ErrorResponse, MetadataModelResponse, MetadataServerResponse


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
    with _Measured("infer", name, version) as measured:
        header_length = request.headers.get(codec.HEADER_LENGTH)
        if codec.json_length(body, header_length) <= _INLINE_DECODE_BYTES:
            infer_request = codec.decode_request(body, header_length)
        else:  # a large JSON document would hold up the event loop
            infer_request = await to_thread.run_sync(codec.decode_request, body, header_length)
        result = measured.result = await dataplane.infer(name, version, infer_request)
        content, binary_header_length = codec.encode_response(result, infer_request)
    if binary_header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={codec.HEADER_LENGTH: str(binary_header_length)}
    )


@router.post("/models/{name}/classify", response_model=Classification, responses=_CALL_ERRORS)
@router.post("/models/{name}/versions/{version}/classify", response_model=Classification, responses=_CALL_ERRORS)
async def classify(dataplane: DataPlaneDep, image: Body, name: str, version: str | None = None):
    """The raw bytes of one JPEG, PNG or DICOM file, preprocessed as the model card says."""
    with _Measured("classify", name, version) as measured:
        measured.result = await dataplane.classify_image(name, version, image)
        return measured.result


@router.post("/repository/index")
async def repository_index(dataplane: DataPlaneDep):
    """Every model version found, READY or UNAVAILABLE with the reason (re-reads the repository)."""
    return [asdict(entry) for entry in await dataplane.repository_index()]


@router.post("/repository/models/{name}/load", responses=_MODEL_ERRORS)
async def load_model(dataplane: DataPlaneDep, name: str):
    await dataplane.load_model(name)
    return {}


@router.post("/repository/models/{name}/unload", responses=_MODEL_ERRORS)
async def unload_model(dataplane: DataPlaneDep, name: str):
    await dataplane.unload_model(name)
    return {}


@ops_router.get("/metrics", include_in_schema=False)
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


class _Measured:
    """Count and time one inference call by model version and outcome (ok or the HTTP status)."""

    def __init__(self, endpoint: str, name: str, version: str | None):
        self.endpoint, self.name, self.version = endpoint, name, version or ""
        self.result = None  # set by the caller; its model_version names the version that answered

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        outcome = "ok" if exc is None else str(status_of(exc))
        version = self.result.model_version if self.result is not None else self.version
        metrics.REQUESTS.labels(self.name, version, self.endpoint, outcome).inc()
        metrics.LATENCY.labels(self.name, version, self.endpoint).observe(time.perf_counter() - self.started)
        return False
