"""The inference service's FastAPI application: load models, map errors, mount routes."""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cxr_model.images import ImageError
from inference import __version__, routes
from inference.dataplane import DataPlane
from inference.errors import InferenceError, error_body, status_of
from inference.logs import RequestIdMiddleware, configure_logging
from inference.memory import release_memory_when_idle, tune_allocator
from inference.repository import ModelRepository
from inference.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging()
    if not settings.repository_token:
        log.warning("INFERENCE_REPOSITORY_TOKEN is not set: anyone who reaches the service may load and unload models")
    tune_allocator()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        repository = ModelRepository(settings)
        await to_thread.run_sync(repository.load_all)  # loads and warms up every model
        app.state.dataplane = DataPlane(repository, settings)
        # What start-up made lives as long as the process: out of the collector's sight, full collections
        # no longer walk it, which would stall every request in flight now and then (p99).
        gc.freeze()
        dataplane = app.state.dataplane
        background = [
            asyncio.create_task(_poll_repository(dataplane, settings.repository_poll_seconds)),
            asyncio.create_task(release_memory_when_idle(dataplane, settings.memory_release_idle_seconds)),
        ]
        yield
        for task in background:
            task.cancel()
        dataplane.close()

    app = FastAPI(
        title="Chest-imaging inference service",
        version=__version__,
        lifespan=lifespan,
        # No OpenTelemetry here (only its API comes with FastAPI): spare every request FastAPI's check
        # for a configured tracer, meter and logger provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.add_middleware(routes.InferEndpoint)  # inside the request id middleware: its calls are logged too
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(InferenceError)
    async def inference_error(_: Request, exc: InferenceError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=exc.status_code)

    @app.exception_handler(ImageError)
    async def image_error(_: Request, exc: ImageError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_of(exc))

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    app.include_router(routes.router)
    app.include_router(routes.ops_router)
    return app


async def _poll_repository(dataplane: DataPlane, seconds: float) -> None:
    """Pick up new and removed model versions every `seconds` (never when 0)."""
    while seconds > 0:
        await asyncio.sleep(seconds)
        try:
            await dataplane.repository_index()
        except Exception:  # a failed poll (S3 unreachable, say) must not stop the next ones
            log.exception("polling the model repository failed")
