"""Request dependencies as typed aliases, used by every route."""

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from gateway import crud
from gateway.errors import ProblemError
from gateway.inference_client import InferenceClient
from gateway.models import User
from gateway.security import InvalidToken, decode_access_token
from gateway.settings import Settings
from gateway.storage import ObjectStore

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


def get_object_store(request: Request) -> ObjectStore:
    return request.app.state.object_store


def get_inference_client(request: Request) -> InferenceClient:
    return request.app.state.inference_client


StoreDep = Annotated[ObjectStore, Depends(get_object_store)]
InferenceDep = Annotated[InferenceClient, Depends(get_inference_client)]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "not_authenticated", detail, {"WWW-Authenticate": "Bearer"})


def get_current_user(session: SessionDep, token: TokenDep, settings: SettingsDep) -> User:
    if not token:
        raise _unauthorized("a bearer token is required")
    try:
        claims = decode_access_token(token, settings)
        user_id = uuid.UUID(claims["sub"])
    except (InvalidToken, ValueError) as exc:
        raise _unauthorized(f"the token is not valid: {exc}") from exc
    user = crud.get_user(session, user_id)
    if user is None or not user.is_active:
        raise _unauthorized("the account does not exist or is disabled")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_current_admin(user: CurrentUser) -> User:
    if user.role != "admin":
        raise ProblemError(403, "forbidden", "this needs the admin role")
    return user


CurrentAdmin = Annotated[User, Depends(get_current_admin)]
