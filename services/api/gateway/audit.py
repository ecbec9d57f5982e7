"""The audit trail: who did what to which target, with what outcome, from where.

Events are written in the request's own transaction: a request's work and the record of it
are committed together, or neither is. Each event is appended to a hash chain (`audit_chain`),
whose head stays locked until the transaction ends: record events last in a unit of work.
"""

from __future__ import annotations

import json
import math
import threading
import time
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


class RepeatCounter:
    """Counts failures of one kind (action, outcome, address, claimed name) per minute in this process."""

    WINDOW_SECONDS = 60
    MAX_KEYS = 100_000

    def __init__(self, written_in_full: int = 20) -> None:
        self.written_in_full = written_in_full
        self.counts: dict[tuple[str, ...], int] = {}
        self.window = 0
        self.lock = threading.Lock()

    def count(self, key: tuple[str, ...]) -> int:
        window = int(time.time() // self.WINDOW_SECONDS)
        with self.lock:
            if window != self.window or len(self.counts) > self.MAX_KEYS:
                self.counts, self.window = {}, window
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]


_repeats = RepeatCounter()


# failures of one kind from one address written one by one each minute (AUDIT_FAILURES_IN_FULL_PER_MINUTE);
# past them only the 100th, 1000th ...: a burst of n writes at most that + log10(n) rows, the later ones
# saying how many so far


def aggregate_failures_after(written_in_full: int) -> None:
    """How many failures of one kind from one address each minute are written one by one (the app's setting)."""
    _repeats.written_in_full = written_in_full


def _is_recorded(count: int) -> bool:
    return count <= _repeats.written_in_full or count == 10 ** round(math.log10(count))


def record_failure(
    session: Session,
    context: RequestContext,
    action: str,
    outcome: Outcome,
    actor_name: str | None = None,
    detail: str | None = None,
) -> None:
    """An unauthenticated failure (a wrong password, a bad token): repeats of one kind from one address
    within a minute are aggregated, so that a flood of them writes a handful of rows, not one each."""
    count = _repeats.count((action, outcome, context.ip or "", actor_name or ""))
    if not _is_recorded(count):
        return
    if count > _repeats.written_in_full:
        detail = f"{detail or outcome}; repeated: {count} of these from this address this minute"
    record(session, context, action, outcome, actor_name=actor_name, detail=detail)


def record_search(
    session: Session, context: RequestContext, action: str, actor: Principal, searched: dict[str, str]
) -> None:
    """A listing, with the filters it was searched by. Record it last: the chain's head stays locked until
    the commit."""
    record(session, context, action, "success", actor, detail=json.dumps(searched) if searched else None)


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
