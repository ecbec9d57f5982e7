"""The gateway's FastAPI application."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway import __version__, api_docs
from gateway.audit import aggregate_failures_after
from gateway.auth_cache import RecentAuthentications, forget_on_account_changes
from gateway.catalog import ModelCatalog
from gateway.db import make_engine, make_session_factory
from gateway.errors import document_error_answers, install_error_handlers
from gateway.inference_client import InferenceClient
from gateway.intake import Decoding
from gateway.memory import map_large_blocks
from gateway.observability import REQUEST_ID_HEADER, Metrics, RequestObservation, configure_logging
from gateway.ratelimit import make_limits
from gateway.request_guards import AuthenticateBeforeBody, BodySizeLimit
from gateway.routes import (
    audit,
    auth,
    classify,
    clients,
    dicomweb,
    health,
    metrics,
    models,
    organisations,
    preview,
    results,
    users,
)
from gateway.routing import Gate
from gateway.security import bound_password_checks
from gateway.settings import Settings, settings_from_environment
from gateway.storage import StorageUnavailable, make_object_store

log = logging.getLogger(__name__)


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
        app.state.gate = Gate(
            catalog,
            settings.image_kind_model,
            settings.refuse_other_population,
            decoding=app.state.decoding,
            burned_in_annotation=settings.burned_in_annotation,
            followup_models=frozenset(settings.followup_models),
        )
        gc.freeze()  # start-up's long-lived objects out of the collector's full passes, which stall requests
        yield
        app.state.inference_client.close()

    app = FastAPI(
        title="Chest-imaging API gateway",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,  # served by api_docs: public with the docs pages, else to signed-in callers
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.recent_authentications = RecentAuthentications(settings.authentication_cache_seconds)
    forget_on_account_changes(app.state.session_factory, app.state.recent_authentications)
    app.state.metrics = Metrics()
    app.state.rate_limiter, app.state.login_throttle = make_limits(settings, app.state.metrics)
    install_error_handlers(app, settings.retry_after_seconds)

    app.state.decoding = Decoding.of(
        settings.max_image_pixels, settings.image_decode_slots, settings.image_decode_wait_seconds
    )
    bound_password_checks(settings.password_check_slots, settings.password_check_wait_seconds)
    aggregate_failures_after(settings.audit_failures_in_full_per_minute)
    map_large_blocks()

    app.add_middleware(
        AuthenticateBeforeBody,
        settings=settings,
        sessions=app.state.session_factory,
        recent=app.state.recent_authentications,
    )
    app.add_middleware(BodySizeLimit, max_upload_bytes=settings.max_upload_bytes)  # outside: counts first
    app.add_middleware(RequestObservation, metrics=app.state.metrics)  # added later: outside the size check
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER],
            expose_headers=["Location", "Retry-After", REQUEST_ID_HEADER],
        )

    # outermost: the client's own address (from a trusted proxy's X-Forwarded-For) for everything inside
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)

    for module in (auth, classify, preview, results, models, users, clients, organisations, audit, health, metrics):
        app.include_router(module.router)
    app.include_router(dicomweb.router)
    api_docs.install(app, settings.docs_served)
    document_error_answers(app)
    return app
