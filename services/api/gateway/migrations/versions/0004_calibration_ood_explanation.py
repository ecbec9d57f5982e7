"""Calibration temperature, out-of-distribution flag and score, explanation heatmap on results

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RESULT_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("calibration_temperature", sa.Float()),
    ("ood", sa.Boolean()),
    ("ood_score", sa.Float()),
    ("explanation_method", sa.String(32)),
    ("explanation_class", sa.String(64)),
    ("heatmap_object_key", sa.String(255)),
]


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        for name, column_type in _RESULT_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
        batch.create_unique_constraint("uq_results_heatmap_object_key", ["heatmap_object_key"])
    op.create_index("ix_results_ood_created_at", "results", ["ood", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_results_ood_created_at", "results")
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint("uq_results_heatmap_object_key", type_="unique")
        for name, _ in reversed(_RESULT_COLUMNS):
            batch.drop_column(name)
