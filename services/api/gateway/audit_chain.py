"""The audit trail as a hash chain: each event stores the SHA-256 of its content and of the event before it.

Changing, removing or inserting an event anywhere breaks the chain from there on, which
`verify` finds (`python -m gateway.audit_verify`). Every append locks the one row of
`audit_chain` (an UPDATE: a row lock on Postgres, the write lock on SQLite) in the transaction
that writes the event, so events of several replicas line up one after the other instead of
forking the chain; the lock is held until that transaction ends, so events are written last in
their request. The retention purge removes the oldest events and moves the chain's anchor (where
verification starts) to the last one removed: what remains still verifies, and the purge records
that anchor in an event of its own.

The head hash `verify` prints is worth keeping outside the database (the purge's and the
verification's output land in the log system): a chain rewritten as a whole by someone with write
access to the database no longer ends in a head recorded there.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table, delete, func, select, update
from sqlalchemy.orm import Session

from gateway.models import AuditChainHead, AuditEvent, as_utc, utcnow

GENESIS_HASH = "0" * 64
HEAD_ID = 1
_CHAIN = cast(Table, AuditChainHead.__table__)
_EVENTS = cast(Table, AuditEvent.__table__)
# what an event's hash covers, besides its place and its predecessor's hash; fixed for good: a change
# would break every chain already stored
HASHED_FIELDS = (
    "id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "target",
    "outcome",
    "ip",
    "request_id",
    "detail",
)
_BATCH = 1000


def _text(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "occurred_at":
        return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")
    if name == "id":
        return str(uuid.UUID(str(value)))
    return value


def event_hash(seq: int, prev_hash: str, content: dict[str, Any]) -> str:
    """The SHA-256 of an event's place, content and predecessor, as canonical JSON."""
    values = [seq, prev_hash, *(_text(name, content.get(name)) for name in HASHED_FIELDS)]
    return hashlib.sha256(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _content(event: AuditEvent | Row[Any]) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}


@dataclass
class _Head:
    seq: int
    hash: str
    anchor_seq: int
    anchor_hash: str
    has_unchained: bool = False  # events an older gateway wrote without chaining them


# built once: both run in every request that records an event
_LOCK_HEAD = (
    update(_CHAIN)
    .where(_CHAIN.c.id == HEAD_ID)
    .values(head_seq=_CHAIN.c.head_seq)
    .returning(
        _CHAIN.c.head_seq,
        _CHAIN.c.head_hash,
        _CHAIN.c.anchor_seq,
        _CHAIN.c.anchor_hash,
        select(_EVENTS.c.id).where(_EVENTS.c.seq.is_(None)).exists(),
    )
)
_SAVE_HEAD = update(_CHAIN).where(_CHAIN.c.id == HEAD_ID)


def lock_head(session: Session) -> _Head:
    """The chain's head, locked until this transaction ends (and, in the same statement, whether any event
    waits to be chained)."""
    locked = session.execute(_LOCK_HEAD).one_or_none()
    if locked is None:
        raise RuntimeError("the audit_chain row is missing: run the migrations (python -m gateway.prestart)")
    head_seq, head_hash, anchor_seq, anchor_hash, has_unchained = locked
    return _Head(head_seq, head_hash, anchor_seq, anchor_hash, bool(has_unchained))


def _seal(head: _Head, event: AuditEvent) -> None:
    event.seq = head.seq + 1
    event.prev_hash = head.hash
    event.hash = event_hash(event.seq, event.prev_hash, _content(event))
    head.seq, head.hash = event.seq, event.hash


def _save_head(session: Session, head: _Head) -> None:
    session.execute(
        _SAVE_HEAD,  # an UPDATE of the columns its parameters name
        {"head_seq": head.seq, "head_hash": head.hash, "anchor_seq": head.anchor_seq, "anchor_hash": head.anchor_hash},
    )


def append(session: Session, event: AuditEvent) -> None:
    """Add the event at the chain's head (in the caller's transaction, which keeps the head locked).

    Events an older gateway wrote unchained during an upgrade are chained first, oldest first.
    """
    head = lock_head(session)
    if head.has_unchained:
        stragglers = select(AuditEvent).where(AuditEvent.seq.is_(None)).order_by(AuditEvent.occurred_at, AuditEvent.id)
        for straggler in session.scalars(stragglers).all():
            _seal(head, straggler)
    event.id = event.id or uuid.uuid4()
    event.occurred_at = event.occurred_at or utcnow()  # taken after the lock: the chain's order is the times'
    _seal(head, event)
    session.add(event)
    session.flush()
    _save_head(session, head)


# the retention purge


@dataclass(frozen=True)
class Trimmed:
    events: int
    anchor_seq: int
    anchor_hash: str


def trim_before(session: Session, cutoff: datetime, batch: int = _BATCH) -> Trimmed:
    """Remove the oldest events, those before `cutoff` up to the first one that is not, a batch per
    transaction (committed here); the anchor moves with each batch, so the chain verifies throughout."""
    removed = 0
    while True:
        head = lock_head(session)
        oldest = session.execute(
            select(_EVENTS.c.seq, _EVENTS.c.occurred_at, _EVENTS.c.hash)
            .where(_EVENTS.c.seq > head.anchor_seq)
            .order_by(_EVENTS.c.seq)
            .limit(batch)
        ).all()
        expired = []
        for row in oldest:
            if as_utc(row.occurred_at) >= cutoff:
                break
            expired.append(row)
        if not expired:
            session.commit()
            return Trimmed(removed, head.anchor_seq, head.anchor_hash)
        last = expired[-1]
        # the anchor moves first: the database refuses to delete events after it (migration 0009)
        head.anchor_seq, head.anchor_hash = last.seq, last.hash
        _save_head(session, head)
        session.execute(delete(_EVENTS).where(_EVENTS.c.seq <= last.seq))
        session.commit()
        removed += len(expired)


# verification


@dataclass
class Verification:
    checked: int = 0
    first_seq: int | None = None
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    anchor_seq: int = 0
    unchained: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, batch: int = _BATCH) -> Verification:
    """Walk the chain from its anchor to its head and report every break (on Postgres in one snapshot,
    so that events appended or purged meanwhile are not mistaken for breaks)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    head = session.execute(select(_CHAIN).where(_CHAIN.c.id == HEAD_ID)).one_or_none()
    if head is None:
        return Verification(problems=["the audit_chain row is missing"])
    report = Verification(head_seq=head.head_seq, head_hash=head.head_hash, anchor_seq=head.anchor_seq)
    expected_seq, expected_prev = head.anchor_seq + 1, head.anchor_hash
    before_anchor = session.scalar(select(_EVENTS.c.seq).where(_EVENTS.c.seq <= head.anchor_seq).limit(1))
    if before_anchor is not None:
        report.problems.append(f"event {before_anchor} is at or before the anchor {head.anchor_seq}")
    after = head.anchor_seq
    while True:
        rows = session.execute(
            select(_EVENTS.c.seq, _EVENTS.c.prev_hash, _EVENTS.c.hash, *(_EVENTS.c[name] for name in HASHED_FIELDS))
            .where(_EVENTS.c.seq > after, _EVENTS.c.seq <= head.head_seq)
            .order_by(_EVENTS.c.seq)
            .limit(batch)
        ).all()
        for row in rows:
            if report.first_seq is None:
                report.first_seq = row.seq
            if row.seq != expected_seq:
                missing = f"event {expected_seq} is" if row.seq == expected_seq + 1 else f"events {expected_seq} to"
                missing += "" if row.seq == expected_seq + 1 else f" {row.seq - 1} are"
                report.problems.append(f"{missing} missing")
            elif row.prev_hash != expected_prev:
                report.problems.append(f"event {row.seq} does not follow event {row.seq - 1} (its prev_hash differs)")
            if event_hash(row.seq, row.prev_hash, _content(row)) != row.hash:
                report.problems.append(f"event {row.seq} ({row.action}) was changed after it was written")
            expected_seq, expected_prev = row.seq + 1, row.hash
            report.checked += 1
        if len(rows) < batch:
            break
        after = rows[-1].seq
    if expected_seq - 1 != head.head_seq or expected_prev != head.head_hash:
        report.problems.append(
            f"the chain ends at event {expected_seq - 1} but its head is event {head.head_seq}:"
            " newer events are missing"
        )
    report.unchained = session.scalar(select(func.count()).select_from(_EVENTS).where(_EVENTS.c.seq.is_(None))) or 0
    _check_purge_record(session, report)
    return report


def _check_purge_record(session: Session, report: Verification) -> None:
    """The anchor must be the one the latest purge recorded (none before the first purge)."""
    latest = session.scalar(
        select(_EVENTS.c.detail)
        .where(_EVENTS.c.action == "retention.purge", _EVENTS.c.outcome == "success")
        .order_by(_EVENTS.c.seq.desc())
        .limit(1)
    )
    try:
        recorded = json.loads(latest).get("audit_anchor_seq", 0) if latest else 0
    except (ValueError, AttributeError):
        recorded = None
    if recorded != report.anchor_seq:
        report.problems.append(
            f"the chain starts after event {report.anchor_seq}, but the last purge recorded {recorded}"
        )
