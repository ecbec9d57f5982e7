import uuid

from fastapi import APIRouter

from gateway import audit, crud, identity
from gateway.db import UnitOfWork
from gateway.deps import AdminDep, RequestContextDep, SessionDep
from gateway.errors import problems
from gateway.exceptions import Conflict, NotFound
from gateway.models import User
from gateway.routes.organisations import organisation_or_404
from gateway.schemas import PasswordReset, PasswordResetOut, UserCreate, UserOut

router = APIRouter(prefix="/users", tags=["users"], responses=problems(401, 403))


def _get_user_or_404(session: UnitOfWork, user_id: uuid.UUID) -> User:
    user = crud.get_user(session, user_id)
    if user is None:
        raise NotFound("user_not_found", f"there is no user {user_id}")
    return user


@router.get("", response_model=list[UserOut])
def list_users(session: SessionDep, admin: AdminDep, context: RequestContextDep) -> list[User]:
    users = crud.list_users(session)
    audit.record(session, context, "user.list", "success", admin, detail=f"{len(users)} users")
    return users


@router.post("", response_model=UserOut, status_code=201, responses=problems(404, 409))
def create_user(session: SessionDep, admin: AdminDep, context: RequestContextDep, user_in: UserCreate) -> User:
    with audit.recorded(session, context, "user.create", admin, f"username:{user_in.username}") as event:
        if crud.get_user_by_username(session, user_in.username):
            raise Conflict("username_taken", f"the username '{user_in.username}' is taken")
        organisation = organisation_or_404(session, user_in.organisation_id or admin.organisation_id)
        user = crud.create_user(session, user_in, organisation.id)
        event.target = f"user:{user.id}"
    return user


@router.post("/{user_id}/disable", response_model=UserOut, responses=problems(404))
def disable_user(session: SessionDep, admin: AdminDep, context: RequestContextDep, user_id: uuid.UUID) -> User:
    """Disable an account; its tokens stop working at once (on other replicas within AUTHENTICATION_CACHE_SECONDS)."""
    with audit.recorded(session, context, "user.disable", admin, f"user:{user_id}"):
        if user_id == admin.id:
            raise Conflict("cannot_disable_self", "administrators cannot disable their own account")
        return identity.set_user_active(session, _get_user_or_404(session, user_id), False)


@router.post("/{user_id}/enable", response_model=UserOut, responses=problems(404))
def enable_user(session: SessionDep, admin: AdminDep, context: RequestContextDep, user_id: uuid.UUID) -> User:
    """Enable a disabled account again; it signs in afresh (sessions from before it was disabled stay ended)."""
    with audit.recorded(session, context, "user.enable", admin, f"user:{user_id}"):
        return identity.set_user_active(session, _get_user_or_404(session, user_id), True)


@router.post("/{user_id}/password", response_model=PasswordResetOut, responses=problems(404, 409, 422))
def reset_password(
    session: SessionDep,
    admin: AdminDep,
    context: RequestContextDep,
    user_id: uuid.UUID,
    reset: PasswordReset | None = None,
) -> PasswordResetOut:
    """Set a temporary password (the one given, or a generated one returned this once); the user must
    choose a new one at the next sign-in, and every session of theirs ends."""
    with audit.recorded(session, context, "user.password_reset", admin, f"user:{user_id}") as event:
        if user_id == admin.id:
            raise Conflict("cannot_reset_self", "change your own password with POST /me/password")
        user = _get_user_or_404(session, user_id)
        chosen = reset.password if reset else None
        temporary = identity.reset_password(session, user, chosen)
        event.detail = "chosen by the administrator" if chosen else "generated"
    return PasswordResetOut(user=UserOut.model_validate(user), temporary_password=None if chosen else temporary)
