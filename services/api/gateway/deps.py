"""Request dependencies as typed aliases, used by every route.

Those that only read app or request state are `async def`: FastAPI runs a plain `def`
dependency in its thread pool, a hop per dependency per request that these do not need.
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from gateway import audit
from gateway.errors import ProblemError
from gateway.identity import authenticate_token
from gateway.inference_client import InferenceClient
from gateway.observability import Metrics
from gateway.principals import Principal, RequestContext
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.storage import ObjectStore

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


async def get_object_store(request: Request) -> ObjectStore:
    return request.app.state.object_store


async def get_inference_client(request: Request) -> InferenceClient:
    return request.app.state.inference_client


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


StoreDep = Annotated[ObjectStore, Depends(get_object_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
InferenceDep = Annotated[InferenceClient, Depends(get_inference_client)]


async def get_request_context(request: Request) -> RequestContext:
    client_ip = request.client.host if request.client else None
    return RequestContext(ip=client_ip, request_id=getattr(request.state, "request_id", None))


RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]


def _route(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:255]


def get_authentication(
    request: Request, session: SessionDep, token: TokenDep, settings: SettingsDep, context: RequestContextDep
) -> tuple[Principal, dict]:
    """The caller behind the bearer token; a token presented and refused is audited (no token at all is not)."""
    try:
        return authenticate_token(session, settings, token)
    except ProblemError as refused:
        if token:
            audit.record(session, context, "auth.token", "failure", target=_route(request), detail=refused.detail)
        raise


AuthenticationDep = Annotated[tuple[Principal, dict], Depends(get_authentication)]


async def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


def get_current_principal(authentication: AuthenticationDep, limiter: RateLimiterDep) -> Principal:
    """The caller, counted against its per-minute request limit."""
    principal = authentication[0]
    wait = limiter.seconds_to_wait(f"{principal.kind}:{principal.id}")
    if wait:
        raise ProblemError(429, "rate_limited", f"too many requests; retry in {wait} s", {"Retry-After": str(wait)})
    return principal


async def get_token_claims(authentication: AuthenticationDep) -> dict:
    return authentication[1]


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]
TokenClaims = Annotated[dict, Depends(get_token_claims)]


def require_role(*roles: str):
    def check(
        principal: CurrentPrincipal, session: SessionDep, context: RequestContextDep, request: Request
    ) -> Principal:
        if principal.role not in roles:
            audit.record(session, context, "auth.role", "denied", principal, _route(request), detail="forbidden")
            raise ProblemError(403, "forbidden", f"this needs the role {' or '.join(roles)}")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_role("admin"))]
