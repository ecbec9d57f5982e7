import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from gateway import audit, crud, export
from gateway.deps import AdminDep, RequestContextDep, SessionDep, SessionFactoryDep, SettingsDep
from gateway.errors import problems
from gateway.exceptions import InvalidInput
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


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **problems(422)},
)
def export_audit_events(
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    admin: AdminDep,
    context: RequestContextDep,
    actor: Annotated[str | None, Query(max_length=128, description="an actor's id or name")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="from this moment (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="up to this moment (exclusive)")] = None,
) -> StreamingResponse:
    """The audit trail with these filters as one CSV file, oldest first, with each event's place in the
    hash chain (`seq`, `prev_hash`, `hash`); at most EXPORT_MAX_ROWS rows. The export is itself audited."""
    where = crud.AuditFilter(actor=actor, action=action, since=since, until=until)
    filters = {"actor": actor, "action": action, "since": since, "until": until}
    with audit.recorded(session, context, "audit.export", admin) as event:
        total = crud.count_audit_events(session, where)
        searched = {name: str(value) for name, value in filters.items() if value is not None}
        event.detail = json.dumps({"rows": total, **searched})
        if total > settings.export_max_rows:
            raise InvalidInput(
                "export_too_large",
                f"{total} events match; narrow the filters (e.g. the dates) to {settings.export_max_rows} or fewer",
            )
    return StreamingResponse(
        export.audit_csv(sessions, where, settings.export_max_rows),
        media_type=export.MEDIA_TYPE,
        headers=export.download_headers("audit", total),
    )
