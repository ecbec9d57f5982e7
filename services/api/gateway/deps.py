"""Request dependencies as typed aliases, used by every route.

Those that only read app or request state are `async def`: FastAPI runs a plain `def`
dependency in its thread pool, a hop per dependency per request that these do not need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, File, Request, UploadFile
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from gateway import audit
from gateway.db import UnitOfWork
from gateway.exceptions import REFUSALS, DatabaseUnavailable, Forbidden, TooLarge, TooManyRequests, Unauthenticated
from gateway.identity import authenticate_token
from gateway.inference_client import InferenceClient
from gateway.observability import Metrics
from gateway.principals import Principal, RequestContext
from gateway.ratelimit import LoginThrottle, RateLimiter
from gateway.routing import Gate
from gateway.settings import Settings
from gateway.storage import ObjectStore

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(request: Request) -> Iterator[UnitOfWork]:
    """The request's unit of work: one transaction, committed once when the route has answered.

    The scope "function" ends it before the response is sent, so a commit that fails is the answer
    (503). A refused request (a 4xx) commits what it recorded of the refusal (`audit.recorded` rolls
    its work back first); any other failure rolls everything back.
    """
    with request.app.state.session_factory() as session:
        try:
            yield session
        except REFUSALS:
            _commit(session)
            raise
        except BaseException:
            session.rollback()
            raise
        _commit(session)


def _commit(session: UnitOfWork) -> None:
    if not session.in_transaction():
        return
    try:
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise DatabaseUnavailable from exc


SessionDep = Annotated[UnitOfWork, Depends(get_session, scope="function")]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_object_store(request: Request) -> ObjectStore:
    return request.app.state.object_store


async def get_inference_client(request: Request) -> InferenceClient:
    return request.app.state.inference_client


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_gate(request: Request) -> Gate:
    return request.app.state.gate


EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[ObjectStore, Depends(get_object_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
InferenceDep = Annotated[InferenceClient, Depends(get_inference_client)]
GateDep = Annotated[Gate, Depends(get_gate)]  # the deployed models and the intended-use gate's settings


async def get_request_context(request: Request) -> RequestContext:
    client_ip = request.client.host if request.client else None
    return RequestContext(ip=client_ip, request_id=getattr(request.state, "request_id", None))


RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]


def get_upload(
    file: Annotated[UploadFile, File(description="a JPEG, PNG or DICOM chest X-ray")], settings: SettingsDep
) -> bytes:
    """The uploaded file's bytes, at most the upload limit."""
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise TooLarge("file_too_large", f"the file exceeds {settings.max_upload_bytes} bytes")
    return data


UploadDep = Annotated[bytes, Depends(get_upload)]


def _route(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:255]


def get_authentication(
    request: Request, session: SessionDep, token: TokenDep, settings: SettingsDep, context: RequestContextDep
) -> tuple[Principal, dict[str, Any]]:
    """The caller behind the bearer token; a token presented and refused is audited (no token at all is not)."""
    try:
        return authenticate_token(session, settings, token)
    except Unauthenticated as refused:
        if token:
            audit.record(session, context, "auth.token", "failure", target=_route(request), detail=refused.message)
        raise


AuthenticationDep = Annotated[tuple[Principal, dict[str, Any]], Depends(get_authentication)]


async def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


async def get_login_throttle(request: Request) -> LoginThrottle:
    return request.app.state.login_throttle


async def get_session_factory(request: Request) -> sessionmaker[UnitOfWork]:
    return request.app.state.session_factory


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
LoginThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]
# for work after the request's own unit of work has ended (e.g. a streamed export reading page by page)
SessionFactoryDep = Annotated[sessionmaker[UnitOfWork], Depends(get_session_factory)]


def get_signed_in_principal(authentication: AuthenticationDep, limiter: RateLimiterDep) -> Principal:
    """The caller, counted against its per-minute request limit, even with a password change pending."""
    principal = authentication[0]
    wait = limiter.seconds_to_wait(f"{principal.kind}:{principal.id}")
    if wait:
        raise TooManyRequests("rate_limited", f"too many requests; retry in {wait} s", wait)
    return principal


SignedInPrincipal = Annotated[Principal, Depends(get_signed_in_principal)]


def get_current_principal(
    principal: SignedInPrincipal, session: SessionDep, context: RequestContextDep, request: Request
) -> Principal:
    """The caller; a user whose password an administrator reset may do nothing else until it is changed
    (only GET /me, POST /me/password and logout take a `SignedInPrincipal`)."""
    if principal.must_change_password:
        audit.record(session, context, "auth.password_change_required", "denied", principal, _route(request))
        raise Forbidden("password_change_required", "choose a new password first (POST /me/password)")
    return principal


async def get_token_claims(authentication: AuthenticationDep) -> dict[str, Any]:
    return authentication[1]


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]
TokenClaims = Annotated[dict[str, Any], Depends(get_token_claims)]


def require_role(*roles: str) -> Callable[..., Principal]:
    def check(
        principal: CurrentPrincipal, session: SessionDep, context: RequestContextDep, request: Request
    ) -> Principal:
        if principal.role not in roles:
            audit.record(session, context, "auth.role", "denied", principal, _route(request), detail="forbidden")
            raise Forbidden("forbidden", f"this needs the role {' or '.join(roles)}")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_role("admin"))]
