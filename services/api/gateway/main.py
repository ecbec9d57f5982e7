"""The gateway's FastAPI application."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__
from gateway.catalog import ModelCatalog
from gateway.db import make_engine, make_session_factory
from gateway.errors import document_error_answers, install_error_handlers, problem_response
from gateway.inference_client import InferenceClient
from gateway.observability import REQUEST_ID_HEADER, Metrics, RequestObservation, configure_logging
from gateway.ratelimit import make_limits
from gateway.routes import audit, auth, classify, clients, health, metrics, models, preview, results, users
from gateway.routing import Gate
from gateway.settings import Settings, settings_from_environment
from gateway.storage import StorageUnavailable, make_object_store

log = logging.getLogger(__name__)
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class BodySizeLimit:
    """Refuses a body whose declared length is over the upload limit before any of it is read."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
                refused = problem_response(413, "file_too_large", f"the body exceeds {self.max_upload_bytes} bytes")
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_from_environment()
    configure_logging(settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.object_store = make_object_store(settings)
        try:
            app.state.object_store.ensure_bucket()
        except StorageUnavailable as exc:  # readiness reports it; the gateway retries per request
            log.error("object store not reachable at start-up: %s", exc)
        app.state.inference_client = InferenceClient(settings)
        catalog = ModelCatalog(app.state.inference_client, settings.model_catalog_ttl_seconds)
        app.state.gate = Gate(catalog, settings.image_kind_model, settings.refuse_other_population)
        gc.freeze()  # start-up's long-lived objects out of the collector's full passes, which stall requests
        yield
        app.state.inference_client.close()

    app = FastAPI(title="Chest-imaging API gateway", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.metrics = Metrics()
    app.state.rate_limiter, app.state.login_throttle = make_limits(settings, app.state.metrics)
    install_error_handlers(app, settings.retry_after_seconds)

    app.add_middleware(BodySizeLimit, max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestObservation, metrics=app.state.metrics)  # added later: outside the size check
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER],
            expose_headers=["Location", "Retry-After", REQUEST_ID_HEADER],
        )

    for module in (auth, classify, preview, results, models, users, clients, audit, health, metrics):
        app.include_router(module.router)
    document_error_answers(app)
    return app
