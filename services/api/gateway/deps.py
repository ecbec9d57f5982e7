"""Request dependencies as typed aliases, used by every route.

Those that only read app or request state are `async def`: FastAPI runs a plain `def`
dependency in its thread pool, a hop per dependency per request that these do not need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, File, Query, Request, UploadFile
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.security import OAuth2
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from gateway import audit, crud
from gateway.auth_cache import Authentication, RecentAuthentications
from gateway.db import UnitOfWork, unit_of_work
from gateway.dicom import deidentified_uid
from gateway.exceptions import Forbidden, TooLarge, TooManyRequests, Unauthenticated
from gateway.identity import authenticate_token
from gateway.inference_client import InferenceClient
from gateway.intake import Decoding
from gateway.observability import Metrics
from gateway.principals import Principal, RequestContext
from gateway.pseudonyms import accession_digest
from gateway.ratelimit import LoginThrottle, RateLimiter
from gateway.routing import Gate
from gateway.settings import Settings
from gateway.storage import ObjectStore


class OAuth2Bearer(OAuth2):
    """The bearer token of either OAuth2 flow the gateway grants (both declared in the OpenAPI schema):
    password for people, client credentials for hospital systems."""

    def __init__(self) -> None:
        flows = OAuthFlows(
            password=OAuthFlowPassword(tokenUrl="auth/token"),
            clientCredentials=OAuthFlowClientCredentials(tokenUrl="auth/token"),
        )
        super().__init__(flows=flows, scheme_name="OAuth2", auto_error=False)

    async def __call__(self, request: HTTPConnection) -> str | None:
        scheme, _, token = (await super().__call__(request) or "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None


oauth2_scheme = OAuth2Bearer()


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(request: Request) -> Iterator[UnitOfWork]:
    """The request's unit of work (`db.unit_of_work`): one transaction, committed once when the route has
    answered. The scope "function" ends it before the response is sent, so a commit that fails is the answer
    (503)."""
    with unit_of_work(request.app.state.session_factory) as session:
        yield session


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


async def get_decoding(request: Request) -> Decoding:
    return request.app.state.decoding


DecodingDep = Annotated[Decoding, Depends(get_decoding)]  # pixels per image and images decoded at once


async def get_request_context(request: Request) -> RequestContext:
    client_ip = request.client.host if request.client else None
    return RequestContext(ip=client_ip, request_id=getattr(request.state, "request_id", None))


RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]


async def get_upload(
    file: Annotated[UploadFile, File(description="a JPEG, PNG or DICOM chest X-ray")], settings: SettingsDep
) -> bytes:
    """The uploaded file's bytes, at most the upload limit."""
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise TooLarge("file_too_large", f"the file exceeds {settings.max_upload_bytes} bytes")
    return data


UploadDep = Annotated[bytes, Depends(get_upload)]


def _route(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:255]


async def get_authentication(
    request: Request, session: SessionDep, token: TokenDep, settings: SettingsDep, context: RequestContextDep
) -> Authentication:
    """The caller behind the bearer token; a token presented and refused is audited (no token at all is not).
    A request the body guard (`request_guards.AuthenticateBeforeBody`) authenticated already is not checked twice."""
    authenticated: Authentication | None = getattr(request.state, "authentication", None)
    authenticated = authenticated or request.app.state.recent_authentications.get(token)
    if authenticated is not None:
        return authenticated
    return await run_in_threadpool(authenticate, request, session, token, settings, context)


def authenticate(
    request: Request, session: UnitOfWork, token: str | None, settings: Settings, context: RequestContext
) -> Authentication:
    """`get_authentication`'s check, in the database; an accepted token is kept a moment (`auth_cache`)."""
    recent: RecentAuthentications = request.app.state.recent_authentications
    generation = recent.generation
    try:
        authenticated = authenticate_token(session, settings, token)
    except Unauthenticated as refused:
        if token:
            audit.record_failure(
                session, context, "auth.token", "failure", detail=f"{_route(request)}: {refused.message}"
            )
        raise
    recent.put(token or "", authenticated, generation)
    return authenticated


AuthenticationDep = Annotated[Authentication, Depends(get_authentication)]


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


async def get_current_principal(
    principal: SignedInPrincipal, session: SessionDep, context: RequestContextDep, request: Request
) -> Principal:
    """The caller; a user whose password an administrator reset may do nothing else until it is changed
    (only GET /me, POST /me/password and logout take a `SignedInPrincipal`)."""
    if principal.must_change_password:
        action, target = "auth.password_change_required", _route(request)
        await run_in_threadpool(audit.record, session, context, action, "denied", principal, target)
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


_RESULT_SORTS = "|".join(f"-?{name}" for name in crud.RESULT_SORTS)


class ResultFilterQuery(BaseModel):
    """The filters of GET /results and its CSV export; a query parameter not named here is refused (400)."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=128)
    since: datetime | None = Field(default=None, description="created at or after")
    until: datetime | None = Field(default=None, description="created before")
    submitted_by: str | None = Field(default=None, max_length=128, description="a username or an API client's name")
    ood: bool | None = Field(default=None, description="true: only images flagged as unlike the training data")
    accession_number: str | None = Field(default=None, max_length=64, description="as given to /classify")
    external_id: str | None = Field(default=None, max_length=128, description="as given to /classify")
    sop_instance_uid: str | None = Field(
        default=None, pattern=r"^[0-9.]{1,64}$", description="the hospital's SOP Instance UID of a DICOM image sent"
    )
    sort: str = Field(default="-created_at", pattern=f"^({_RESULT_SORTS})$")

    def where(self, secret: str) -> crud.ResultFilter:
        """The filter as the database holds the values: the accession number as its keyed digest, the SOP
        Instance UID as the de-identified image's."""
        keyed = {"accession_number", "sop_instance_uid"}
        return crud.ResultFilter(
            **self.model_dump(include=set(ResultFilterQuery.model_fields) - keyed),
            accession_number=accession_digest(self.accession_number, secret) if self.accession_number else None,
            sop_instance_uid=deidentified_uid(self.sop_instance_uid, secret) if self.sop_instance_uid else None,
        )


class ResultPageQuery(ResultFilterQuery):
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)
    page: int | None = Field(default=None, ge=1, description="1-based page of `limit` items; overrides `offset`")

    @property
    def start(self) -> int:
        return (self.page - 1) * self.limit if self.page else self.offset


def get_result_filter(query: Annotated[ResultFilterQuery, Query()], settings: SettingsDep) -> crud.ResultFilter:
    return query.where(settings.deidentification_uid_secret)


ResultFiltersDep = Annotated[crud.ResultFilter, Depends(get_result_filter)]
ResultPageDep = Annotated[ResultPageQuery, Query()]


class AuditFilterQuery(BaseModel):
    """The filters of GET /audit and its CSV export; a query parameter not named here is refused (400)."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, max_length=128, description="an actor's id or name")
    action: str | None = Field(default=None, max_length=64)
    since: datetime | None = Field(default=None, description="from this moment (inclusive)")
    until: datetime | None = Field(default=None, description="up to this moment (exclusive)")

    @property
    def where(self) -> crud.AuditFilter:
        return crud.AuditFilter(**self.model_dump(include=set(AuditFilterQuery.model_fields)))


class AuditPageQuery(AuditFilterQuery):
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


AuditFiltersDep = Annotated[AuditFilterQuery, Query()]
AuditPageDep = Annotated[AuditPageQuery, Query()]
