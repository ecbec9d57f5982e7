import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request, Response

from gateway import identity
from gateway.deps import (
    LoginThrottleDep,
    RequestContextDep,
    SessionDep,
    SettingsDep,
    SignedInPrincipal,
    TokenClaims,
)
from gateway.errors import problems
from gateway.exceptions import InvalidInput
from gateway.identity import IssuedTokens
from gateway.principals import Principal
from gateway.schemas import PasswordChange, PrincipalOut, Token

router = APIRouter(tags=["auth"])


@dataclass
class TokenRequest:
    """The OAuth2 token request: the password grant, or client credentials in the form or HTTP Basic."""

    grant_type: Literal["password", "client_credentials"]
    username: str | None
    password: str | None
    client_id: str | None
    client_secret: str | None


def token_request(
    request: Request,
    grant_type: Annotated[Literal["password", "client_credentials"], Form()] = "password",
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> TokenRequest:
    basic = _basic_credentials(request.headers.get("authorization", ""))
    if basic and not client_id:
        client_id, client_secret = basic
    return TokenRequest(grant_type, username, password, client_id, client_secret)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, secret


def _token(issued: IssuedTokens) -> Token:
    return Token.model_validate(issued, from_attributes=True)


def _missing(fields: str) -> InvalidInput:
    return InvalidInput("invalid_request", f"{fields} are required for this grant type")


_AUTH_ERRORS = problems(401, 422, 429)


@router.post("/auth/token", response_model=Token, response_model_exclude_none=True, responses=_AUTH_ERRORS)
def issue_token(
    session: SessionDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    context: RequestContextDep,
    form: Annotated[TokenRequest, Depends(token_request)],
) -> Token:
    """OAuth2 token endpoint: the password grant (with a refresh token) or client credentials (API clients)."""
    if form.grant_type == "client_credentials":
        if not (form.client_id and form.client_secret):
            raise _missing("client_id and client_secret")
        issued = identity.login_with_client_credentials(
            session, settings, throttle, context, form.client_id, form.client_secret
        )
    else:
        if not (form.username and form.password):
            raise _missing("username and password")
        issued = identity.login_with_password(session, settings, throttle, context, form.username, form.password)
    return _token(issued)


@router.post("/auth/refresh", response_model=Token, response_model_exclude_none=True, responses=_AUTH_ERRORS)
def refresh_token(
    session: SessionDep, settings: SettingsDep, context: RequestContextDep, refresh_token: Annotated[str, Form()]
) -> Token:
    """Trade a refresh token for new tokens; each refresh token works once."""
    return _token(identity.refresh(session, settings, context, refresh_token))


@router.post("/auth/logout", status_code=204, response_class=Response, responses=problems(401))
def logout(
    session: SessionDep,
    context: RequestContextDep,
    principal: SignedInPrincipal,
    claims: TokenClaims,
    refresh_token: Annotated[str | None, Form()] = None,
) -> None:
    """Revoke this access token (until it expires) and, when given, the refresh token's session."""
    identity.logout(session, context, principal, claims, refresh_token)


@router.get("/me", response_model=PrincipalOut, responses=problems(401))
def me(principal: SignedInPrincipal) -> PrincipalOut:
    """The caller; `must_change_password` says whether a new password must be chosen first."""
    return principal_out(principal)


@router.post(
    "/me/password", response_model=Token, response_model_exclude_none=True, responses=problems(401, 403, 422, 429)
)
def change_password(
    session: SessionDep,
    settings: SettingsDep,
    throttle: LoginThrottleDep,
    context: RequestContextDep,
    principal: SignedInPrincipal,
    change: PasswordChange,
) -> Token:
    """Change one's own password (users only). Every other session ends; this one goes on with the
    tokens returned. A wrong current password is a 403 `wrong_password`, throttled like sign-ins."""
    return _token(
        identity.change_own_password(
            session, settings, throttle, context, principal, change.current_password, change.new_password
        )
    )


def principal_out(principal: Principal) -> PrincipalOut:
    fields = PrincipalOut.model_fields.keys() - {"username"}
    return PrincipalOut(username=principal.name, **{name: getattr(principal, name) for name in fields})
