from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from gateway import crud
from gateway.deps import CurrentUser, SessionDep, SettingsDep
from gateway.errors import ProblemError
from gateway.schemas import Problem, Token, UserOut
from gateway.security import create_access_token

router = APIRouter(tags=["auth"])


@router.post("/auth/token", response_model=Token, responses={401: {"model": Problem}})
def login(session: SessionDep, settings: SettingsDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]):
    """OAuth2 password flow: a username and password for a short-lived bearer token."""
    user = crud.authenticate(session, form.username, form.password)
    if user is None:
        raise ProblemError(401, "invalid_credentials", "wrong username or password", {"WWW-Authenticate": "Bearer"})
    token, expires_in = create_access_token(str(user.id), user.role, settings)
    return Token(access_token=token, expires_in=expires_in)


@router.get("/me", response_model=UserOut, responses={401: {"model": Problem}})
def me(user: CurrentUser):
    return user
