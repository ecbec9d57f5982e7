from fastapi import APIRouter

from gateway import crud
from gateway.deps import CurrentAdmin, SessionDep
from gateway.errors import ProblemError
from gateway.schemas import Problem, UserCreate, UserOut

router = APIRouter(prefix="/users", tags=["users"], responses={401: {"model": Problem}, 403: {"model": Problem}})


@router.get("", response_model=list[UserOut])
def list_users(session: SessionDep, _: CurrentAdmin):
    return crud.list_users(session)


@router.post("", response_model=UserOut, status_code=201, responses={409: {"model": Problem}})
def create_user(session: SessionDep, _: CurrentAdmin, user_in: UserCreate):
    if crud.get_user_by_username(session, user_in.username):
        raise ProblemError(409, "username_taken", f"the username '{user_in.username}' is taken")
    return crud.create_user(session, user_in)
