"""DICOM metadata on images; caller references, idempotency keys and listing indexes on results

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_IMAGE_COLUMNS = [("modality", 16), ("body_part", 64), ("view_position", 16)]
_RESULT_COLUMNS = [("accession_number", 64), ("external_id", 128), ("idempotency_key", 255), ("request_sha256", 64)]
_RESULT_INDEXES = {
    "ix_results_label_created_at": ["label", "created_at"],
    "ix_results_model_created_at": ["model_name", "created_at"],
}


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        for name, length in _IMAGE_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
    with op.batch_alter_table("results") as batch:
        for name, length in _RESULT_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
        batch.create_unique_constraint("uq_results_idempotency_key", ["idempotency_key"])
    for name, columns in _RESULT_INDEXES.items():
        op.create_index(name, "results", columns)


def downgrade() -> None:
    for name in _RESULT_INDEXES:
        op.drop_index(name, "results")
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint("uq_results_idempotency_key", type_="unique")
        for name, _ in reversed(_RESULT_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("images") as batch:
        for name, _ in reversed(_IMAGE_COLUMNS):
            batch.drop_column(name)
