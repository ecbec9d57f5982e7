"""The explanation heatmap moves from a stored PNG object into the result row; image pixel size

The overlay is drawn from the row when it is asked for, so each result has exactly one
object (its image). Overlays stored by 0004 are no longer referenced: the reaper removes
them. Downgrading leaves results without a heatmap (their overlays are not re-created).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("height", sa.Integer(), nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("explanation_region", sa.String(32), nullable=True))
        batch.add_column(sa.Column("explanation_heatmap", sa.JSON(), nullable=True))
        batch.drop_constraint("uq_results_heatmap_object_key", type_="unique")
        batch.drop_column("heatmap_object_key")


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("heatmap_object_key", sa.String(255), nullable=True))
        batch.create_unique_constraint("uq_results_heatmap_object_key", ["heatmap_object_key"])
        batch.drop_column("explanation_heatmap")
        batch.drop_column("explanation_region")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("height")
        batch.drop_column("width")
