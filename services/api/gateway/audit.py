"""The audit trail: who did what to which target, with what outcome, from where.

Events are written in the request's own transaction: a request's work and the record of it
are committed together, or neither is. Each event is appended to a hash chain (`audit_chain`),
whose head stays locked until the transaction ends: record events last in a unit of work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from gateway import crud
from gateway.exceptions import REFUSALS, Forbidden
from gateway.models import AuditEvent
from gateway.principals import Principal, RequestContext

Outcome = Literal["success", "failure", "denied"]


def record(
    session: Session,
    context: RequestContext,
    action: str,
    outcome: Outcome,
    actor: Principal | None = None,
    target: str | None = None,
    actor_name: str | None = None,
    detail: str | None = None,
) -> None:
    """Add one event; `actor_name` names the claimed actor of a failed login, which has no Principal."""
    event = AuditEvent(
        actor_kind=actor.kind if actor else None,
        actor_id=str(actor.id) if actor else None,
        actor_name=actor.name if actor else actor_name,
        action=action,
        target=target,
        outcome=outcome,
        ip=context.ip,
        request_id=context.request_id,
        detail=detail,
    )
    crud.add_audit_event(session, event)


@dataclass
class PendingEvent:
    """What the audited block learns as it runs (the new result's id, a note)."""

    target: str | None
    detail: str | None = None


@contextmanager
def recorded(
    session: Session, context: RequestContext, action: str, actor: Principal, target: str | None = None
) -> Iterator[PendingEvent]:
    """Records the block's outcome: success, or the refusal that ends it (a 403 as denied).

    A refused block's work is rolled back first, so that only the record of the refusal remains
    to be committed. Failures of the gateway itself (a dependency down) are logged, not audited:
    the database may be the thing that failed.
    """
    event = PendingEvent(target)
    try:
        yield event
    except REFUSALS as refused:
        session.rollback()
        outcome: Outcome = "denied" if isinstance(refused, Forbidden) else "failure"
        record(session, context, action, outcome, actor, event.target, detail=refused.code)
        raise
    record(session, context, action, "success", actor, event.target, detail=event.detail)
