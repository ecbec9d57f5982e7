"""Thin routes: KServe v2 REST plus the image call; all logic lives in the data plane."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from inference import metrics
from inference.dataplane import DataPlane
from inference.errors import PayloadTooLarge
from inference.protocol import ImageClassification, InferenceRequest, InferenceResponse, MetadataModelResponse, MetadataServerResponse


def get_dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]


async def read_image_body(request: Request) -> bytes:
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


ImageBody = Annotated[bytes, Depends(read_image_body)]


router = APIRouter(prefix="/v2")
ops_router = APIRouter()


@router.get("", response_model=MetadataServerResponse)
def server_metadata(dataplane: DataPlaneDep):
    return dataplane.server_metadata()


@router.get("/health/live")
def live(dataplane: DataPlaneDep):
    return {"live": dataplane.live()}


@router.get("/health/ready")
def ready(dataplane: DataPlaneDep):
    is_ready = dataplane.ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}", response_model=MetadataModelResponse)

@router.get("/models/{name}/versions/{version}", response_model=MetadataModelResponse)
def model_metadata(dataplane: DataPlaneDep, name: str, version: str | None = None):
    return dataplane.model_metadata(name, version)


@router.get("/models/{name}/ready")

@router.get("/models/{name}/versions/{version}/ready")
def model_ready(dataplane: DataPlaneDep, name: str, version: str | None = None):
    return {"name": name, "ready": dataplane.model_ready(name, version)}


@router.post("/models/{name}/infer", response_model=InferenceResponse)

@router.post("/models/{name}/versions/{version}/infer", response_model=InferenceResponse)
async def infer(dataplane: DataPlaneDep, request: InferenceRequest, name: str, version: str | None = None):
    with _measured(name, "infer"):
        return await run_in_threadpool(dataplane.infer, name, version, request)


@router.post("/models/{name}/classify", response_model=ImageClassification)

@router.post("/models/{name}/versions/{version}/classify", response_model=ImageClassification)
async def classify(dataplane: DataPlaneDep, image: ImageBody, name: str, version: str | None = None):
    """The raw bytes of one JPEG or PNG file, preprocessed as the model card says."""
    with _measured(name, "classify"):
        return await run_in_threadpool(dataplane.classify_image, name, version, image)

@ops_router.get("/metrics", include_in_schema=False)
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


class _measured:
    """Count and time one call, labelled by its outcome."""

    def __init__(self, model: str, endpoint: str):
        self.model, self.endpoint = model, endpoint

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, exc_type, exc, tb):
        outcome = "ok" if exc_type is None else getattr(exc, "status_code", None) or exc_type.__name__
        metrics.REQUESTS.labels(self.model, self.endpoint, str(outcome)).inc()
        metrics.LATENCY.labels(self.model, self.endpoint).observe(time.perf_counter() - self.started)
        return False
