"""The audit trail: who did what to which target, with what outcome, from where."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from sqlalchemy.orm import Session

from gateway import crud
from gateway.errors import ProblemError
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
    """Store one event; `actor_name` names the claimed actor of a failed login, which has no Principal."""
    crud.add_audit_event(session, _event(context, action, outcome, actor, target, actor_name, detail))


def _event(
    context: RequestContext,
    action: str,
    outcome: Outcome,
    actor: Principal | None,
    target: str | None,
    actor_name: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    return AuditEvent(
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


class PendingEvent:
    """What the audited block learns as it runs (the new result's id, a note).

    A block that commits its own writes calls `stage_success()` just before its commit, so that
    what it did and the record of it are stored together, or neither is.
    """

    def __init__(self, session: Session, context: RequestContext, action: str, actor: Principal, target: str | None):
        self.session, self.context, self.action, self.actor = session, context, action, actor
        self.target = target
        self.detail: str | None = None
        self.staged = False

    def success_event(self) -> AuditEvent:
        return _event(self.context, self.action, "success", self.actor, self.target, detail=self.detail)

    def stage_success(self) -> None:
        """Insert the success event in the block's transaction, uncommitted."""
        crud.stage_audit_event(self.session, self.success_event())
        self.staged = True


@contextmanager
def recorded(
    session: Session, context: RequestContext, action: str, actor: Principal, target: str | None = None
) -> Iterator[PendingEvent]:
    """Records the block's outcome: success, or the failure a 4xx problem reports (403 as denied).

    Failures of the gateway itself (5xx) are logged, not audited: the database may be the thing that failed.
    """
    event = PendingEvent(session, context, action, actor, target)
    try:
        yield event
    except ProblemError as problem:
        if problem.status < 500:
            outcome = "denied" if problem.status == 403 else "failure"
            record(session, context, action, outcome, actor, event.target, detail=problem.code)
        raise
    if not event.staged:
        crud.add_audit_event(session, event.success_event())
