from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from gateway import crud
from gateway.deps import AdminDep, SessionDep
from gateway.errors import problems
from gateway.schemas import AuditEventOut, AuditPage

router = APIRouter(prefix="/audit", tags=["audit"], responses=problems(401, 403))


@router.get("", response_model=AuditPage)
def list_audit_events(
    session: SessionDep,
    _: AdminDep,
    actor: Annotated[str | None, Query(max_length=128, description="an actor's id or name")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="from this moment (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="up to this moment (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    """The audit trail, newest first."""
    where = crud.AuditFilter(actor=actor, action=action, since=since, until=until)
    events, total = crud.list_audit_events(session, where, limit, offset)
    return AuditPage(
        items=[AuditEventOut.model_validate(event) for event in events], total=total, limit=limit, offset=offset
    )
