"""API clients, refresh tokens, revoked access tokens, login throttling, audit events;
results and images may be submitted by an API client.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (table, user column made optional, new client column)
_SUBMITTER_COLUMNS = [
    ("images", "uploaded_by_id", "uploaded_by_client_id"),
    ("results", "created_by_id", "created_by_client_id"),
]


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("hashed_secret", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])
    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revoked_access_tokens_expires_at", "revoked_access_tokens", ["expires_at"])
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=True),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("actor_name", sa.String(128), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_actor_occurred", "audit_events", ["actor_id", "occurred_at"])

    for table, user_column, client_column in _SUBMITTER_COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(user_column, existing_type=sa.Uuid(), nullable=True)
            batch.add_column(sa.Column(client_column, sa.Uuid(), nullable=True))
            batch.create_foreign_key(f"fk_{table}_{client_column}", "api_clients", [client_column], ["id"])
    op.create_index("ix_results_created_by_id", "results", ["created_by_id"])
    op.create_index("ix_results_created_by_client_id", "results", ["created_by_client_id"])


def downgrade() -> None:
    op.drop_index("ix_results_created_by_client_id", "results")
    op.drop_index("ix_results_created_by_id", "results")
    for table, user_column, client_column in _SUBMITTER_COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_{client_column}", type_="foreignkey")
            batch.drop_column(client_column)
            batch.alter_column(user_column, existing_type=sa.Uuid(), nullable=False)
    op.drop_table("audit_events")
    op.drop_table("login_throttles")
    op.drop_table("revoked_access_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("api_clients")
