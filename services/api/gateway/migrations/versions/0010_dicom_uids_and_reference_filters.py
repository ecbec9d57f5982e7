"""De-identified DICOM UIDs on images; indexes for finding results by the caller's references

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_IMAGE_COLUMNS = ["study_instance_uid", "sop_instance_uid"]
_INDEXES = {
    "ix_images_sop_instance_uid": ("images", ["sop_instance_uid"]),
    "ix_results_accession_number": ("results", ["accession_number"]),
    "ix_results_external_id": ("results", ["external_id"]),
}


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        for name in _IMAGE_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(64), nullable=True))
    for name, (table, columns) in _INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in _INDEXES.items():
        op.drop_index(name, table)
    with op.batch_alter_table("images") as batch:
        for name in reversed(_IMAGE_COLUMNS):
            batch.drop_column(name)
