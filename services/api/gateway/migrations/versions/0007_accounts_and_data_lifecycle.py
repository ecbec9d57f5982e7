"""Accounts and data lifecycle: forced password changes, ended sessions, and the audit trail as a hash chain

- `users.must_change_password` (an administrator's reset sets it) and `users.session_epoch` (access
  tokens of an earlier epoch are refused: a password change, reset, disable or enable moves it on).
- `audit_events.seq`, `prev_hash` and `hash`: each event's place in the chain, its predecessor's
  hash and its own SHA-256 (see `gateway.audit_chain`); `audit_chain` holds the head every append
  locks, and the anchor the retention purge moves. The events already stored are chained here,
  oldest first (by time, then id), so the whole trail verifies from this revision on, with
  `gateway.audit_chain.event_hash`: what a hash covers can never change once chains are stored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.audit_chain import GENESIS_HASH, HASHED_FIELDS, event_hash

revision = "0007"
down_revision = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000

events = sa.table(
    "audit_events",
    sa.column("id", sa.Uuid()),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    *(sa.column(name, sa.String()) for name in HASHED_FIELDS[2:]),
    sa.column("seq", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
chain = sa.table(
    "audit_chain",
    sa.column("id", sa.Integer()),
    sa.column("head_seq", sa.BigInteger()),
    sa.column("head_hash", sa.String()),
    sa.column("anchor_seq", sa.BigInteger()),
    sa.column("anchor_hash", sa.String()),
)


def _chain_existing_events() -> tuple[int, str]:
    """Chain the stored events, oldest first; returns the head (seq and hash)."""
    connection = op.get_bind()
    seq, head = 0, GENESIS_HASH
    after: tuple[datetime, Any] | None = None
    update = (
        sa.update(events)
        .where(events.c.id == sa.bindparam("event_id"))
        .values(seq=sa.bindparam("new_seq"), prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash"))
    )
    while True:
        query = sa.select(events).order_by(events.c.occurred_at, events.c.id).limit(_BATCH)
        if after is not None:
            query = query.where(sa.tuple_(events.c.occurred_at, events.c.id) > sa.tuple_(*after))
        rows = connection.execute(query).all()
        if not rows:
            return seq, head
        parameters = []
        for row in rows:
            seq += 1
            digest = event_hash(seq, head, row._asdict())
            parameters.append({"event_id": row.id, "new_seq": seq, "new_prev": head, "new_hash": digest})
            head = digest
        connection.execute(update, parameters)
        after = (rows[-1].occurred_at, rows[-1].id)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    op.create_index("ix_audit_events_seq", "audit_events", ["seq"], unique=True)
    op.create_index(
        "ix_audit_events_unchained",
        "audit_events",
        ["occurred_at"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("anchor_seq", sa.BigInteger(), nullable=False),
        sa.Column("anchor_hash", sa.String(64), nullable=False),
    )
    head_seq, head_hash = _chain_existing_events()
    op.bulk_insert(
        chain,
        [{"id": 1, "head_seq": head_seq, "head_hash": head_hash, "anchor_seq": 0, "anchor_hash": GENESIS_HASH}],
    )


def downgrade() -> None:
    op.drop_table("audit_chain")
    op.drop_index("ix_audit_events_unchained", table_name="audit_events")
    op.drop_index("ix_audit_events_seq", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_epoch")
        batch.drop_column("must_change_password")
