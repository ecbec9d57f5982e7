import uuid

from fastapi import APIRouter

from gateway import audit, crud
from gateway.db import UnitOfWork
from gateway.deps import AdminDep, RequestContextDep, SessionDep
from gateway.errors import problems
from gateway.exceptions import Conflict, NotFound
from gateway.models import User
from gateway.schemas import UserCreate, UserOut

router = APIRouter(prefix="/users", tags=["users"], responses=problems(401, 403))


def _get_user_or_404(session: UnitOfWork, user_id: uuid.UUID) -> User:
    user = crud.get_user(session, user_id)
    if user is None:
        raise NotFound("user_not_found", f"there is no user {user_id}")
    return user


@router.get("", response_model=list[UserOut])
def list_users(session: SessionDep, _: AdminDep) -> list[User]:
    return crud.list_users(session)


@router.post("", response_model=UserOut, status_code=201, responses=problems(409))
def create_user(session: SessionDep, admin: AdminDep, context: RequestContextDep, user_in: UserCreate) -> User:
    with audit.recorded(session, context, "user.create", admin, f"username:{user_in.username}") as event:
        if crud.get_user_by_username(session, user_in.username):
            raise Conflict("username_taken", f"the username '{user_in.username}' is taken")
        user = crud.create_user(session, user_in)
        event.target = f"user:{user.id}"
    return user


@router.post("/{user_id}/disable", response_model=UserOut, responses=problems(404))
def disable_user(session: SessionDep, admin: AdminDep, context: RequestContextDep, user_id: uuid.UUID) -> User:
    """Disable an account; its tokens stop working at once."""
    with audit.recorded(session, context, "user.disable", admin, f"user:{user_id}"):
        if user_id == admin.id:
            raise Conflict("cannot_disable_self", "administrators cannot disable their own account")
        return crud.set_active(session, _get_user_or_404(session, user_id), False)
