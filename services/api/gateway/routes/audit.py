from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from gateway import audit, crud, export
from gateway.deps import (
    AdminDep,
    AuditFiltersDep,
    AuditPageDep,
    RequestContextDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
)
from gateway.errors import problems
from gateway.schemas import AuditEventOut, AuditPage

router = APIRouter(prefix="/audit", tags=["audit"], responses=problems(401, 403))


@router.get("", response_model=AuditPage, responses=problems(400))
def list_audit_events(
    session: SessionDep, admin: AdminDep, context: RequestContextDep, query: AuditPageDep
) -> AuditPage:
    """The audit trail, newest first."""
    where = query.where
    events, total = crud.list_audit_events(session, where, query.limit, query.offset)
    items = [AuditEventOut.model_validate(event) for event in events]
    page = AuditPage(items=items, total=total, limit=query.limit, offset=query.offset)
    audit.record_search(session, context, "audit.list", admin, where.searched())
    return page


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **problems(400, 422)},
)
def export_audit_events(
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    admin: AdminDep,
    context: RequestContextDep,
    query: AuditFiltersDep,
) -> StreamingResponse:
    """The audit trail with these filters as one CSV file, oldest first, with each event's place in the
    hash chain (`seq`, `prev_hash`, `hash`); at most EXPORT_MAX_ROWS rows. The export is itself audited."""
    where = query.where
    with audit.recorded(session, context, "audit.export", admin) as event:
        total = export.checked_size(crud.count_audit_events(session, where), where.searched(), settings, event)
    return StreamingResponse(
        export.audit_csv(sessions, where, settings.export_max_rows),
        media_type=export.MEDIA_TYPE,
        headers=export.download_headers("audit", total),
    )
