"""The inference service's FastAPI application: load models, map errors, mount routes."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from inference import __version__, routes
from inference.dataplane import DataPlane
from inference.errors import InferenceError
from inference.preprocessing import ImageError
from inference.repository import ModelRepository
from inference.settings import Settings

_IMAGE_ERROR_STATUS = {"unsupported_media_type": 415, "image_too_large": 413}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        repository = ModelRepository(settings)
        await run_in_threadpool(repository.load_all)  # loads and warms up every model
        app.state.dataplane = DataPlane(repository)
        yield

    app = FastAPI(title="Chest-imaging inference service", version=__version__, lifespan=lifespan)
    app.state.settings = settings

    @app.exception_handler(InferenceError)
    async def inference_error(_: Request, exc: InferenceError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)

    @app.exception_handler(ImageError)
    async def image_error(_: Request, exc: ImageError) -> JSONResponse:
        status = _IMAGE_ERROR_STATUS.get(exc.code, 400)
        return JSONResponse({"error": str(exc), "code": exc.code}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    app.include_router(routes.router)
    app.include_router(routes.ops_router)
    return app
