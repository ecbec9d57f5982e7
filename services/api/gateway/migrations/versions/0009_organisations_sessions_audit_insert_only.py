"""Organisations, session lifetimes, keyed accession numbers, and an insert-only audit trail

- `organisations`, and `organisation_id` on users, API clients and results: people see the results of
  their organisation only. Every account and result stored before is put in the organisation
  "default" (`DEFAULT_ORGANISATION_ID`).
- `refresh_tokens.session_started_at`: when the sign-in a refresh token descends from happened (no
  refresh past SESSION_MAX_HOURS after it); the tokens stored before count from their own creation.
- `results.accession_number` holds the accession number's keyed digest (`gateway.pseudonyms`), never
  the clear value: the stored ones are replaced by theirs, with DEIDENTIFICATION_UID_SECRET from the
  environment (required when there are any). A downgrade cannot bring the clear values back and
  empties the column.
- Triggers make `audit_events` insert-only, whichever role writes: an update is refused unless it
  only chains an event an older gateway wrote unchained (its content unchanged); a delete is refused
  unless the event is at or before the chain's anchor (the retention purge moves the anchor first);
  TRUNCATE is refused (Postgres). A later migration that rebuilds the table on SQLite must create
  them again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import os
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from gateway.audit_chain import HASHED_FIELDS
from gateway.models import DEFAULT_ORGANISATION_ID
from gateway.pseudonyms import accession_digest

revision = "0009"
down_revision = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCOPED = ("users", "api_clients", "results")
_REFUSED = "audit events are insert-only"

_POSTGRES_TRIGGERS = [
    f"""
    CREATE FUNCTION audit_events_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND OLD.seq IS NULL
         AND ({", ".join(f"OLD.{name}" for name in HASHED_FIELDS)})
             IS NOT DISTINCT FROM ({", ".join(f"NEW.{name}" for name in HASHED_FIELDS)}) THEN
        RETURN NEW;
      END IF;
      IF TG_OP = 'DELETE' AND OLD.seq <= (SELECT anchor_seq FROM audit_chain WHERE id = 1) THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION '{_REFUSED} (%)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    "CREATE TRIGGER audit_events_insert_only BEFORE UPDATE OR DELETE ON audit_events"
    " FOR EACH ROW EXECUTE FUNCTION audit_events_insert_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_events_insert_only()",
]
_CHANGED = " OR ".join(f"NEW.{name} IS NOT OLD.{name}" for name in HASHED_FIELDS)
_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER audit_events_insert_only BEFORE UPDATE ON audit_events
    WHEN OLD.seq IS NOT NULL OR {_CHANGED}
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END
    """,
    f"""
    CREATE TRIGGER audit_events_delete_behind_anchor BEFORE DELETE ON audit_events
    WHEN OLD.seq IS NULL OR OLD.seq > (SELECT anchor_seq FROM audit_chain WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END
    """,
]
_DROP = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
        "DROP TRIGGER IF EXISTS audit_events_insert_only ON audit_events",
        "DROP FUNCTION IF EXISTS audit_events_insert_only()",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS audit_events_insert_only",
        "DROP TRIGGER IF EXISTS audit_events_delete_behind_anchor",
    ],
}

organisations = sa.table(
    "organisations", sa.column("id", sa.Uuid()), sa.column("name", sa.String()), sa.column("created_at", sa.DateTime())
)
results = sa.table("results", sa.column("id", sa.Uuid()), sa.column("accession_number", sa.String()))


def _key_accession_numbers() -> None:
    connection = op.get_bind()
    stored = connection.execute(sa.select(results).where(results.c.accession_number.is_not(None))).all()
    if not stored:
        return
    secret = os.environ.get("DEIDENTIFICATION_UID_SECRET", "")
    if not secret:
        raise RuntimeError(
            "results hold accession numbers: set DEIDENTIFICATION_UID_SECRET (the gateway's) for this migration,"
            " which stores them keyed"
        )
    connection.execute(
        sa.update(results)
        .where(results.c.id == sa.bindparam("result_id"))
        .values(accession_number=sa.bindparam("digest")),
        [{"result_id": row.id, "digest": accession_digest(row.accession_number, secret)} for row in stored],
    )


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(organisations, [{"id": DEFAULT_ORGANISATION_ID, "name": "default", "created_at": datetime.now(UTC)}])
    stored_default = DEFAULT_ORGANISATION_ID.hex if op.get_bind().dialect.name == "sqlite" else DEFAULT_ORGANISATION_ID
    for table in _SCOPED:
        default = sa.text(f"'{stored_default}'")
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("organisation_id", sa.Uuid(), nullable=False, server_default=default))
            batch.create_foreign_key(f"fk_{table}_organisation_id", "organisations", ["organisation_id"], ["id"])
        with op.batch_alter_table(table) as batch:
            batch.alter_column("organisation_id", server_default=None)
        op.create_index(f"ix_{table}_organisation_id", table, ["organisation_id"])
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("session_started_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE refresh_tokens SET session_started_at = created_at")
    _key_accession_numbers()
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.execute("UPDATE results SET accession_number = NULL")  # digests: the clear values are not kept anywhere
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("session_started_at")
    for table in reversed(_SCOPED):
        op.drop_index(f"ix_{table}_organisation_id", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_organisation_id", type_="foreignkey")
            batch.drop_column("organisation_id")
    op.drop_table("organisations")
