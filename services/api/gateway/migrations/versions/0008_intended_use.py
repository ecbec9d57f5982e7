"""Intended use and routing: what the gate saw, kept with each result

`results.image_kind` (JSON: the image-kind model's label, its name in words, its probability and
the model, e.g. `{"label": "chest_xray", "name": "Chest X-ray", "probability": 0.998, "model":
"image-kind/1"}`), `results.warnings` (JSON list of `{code, detail, found, accepted}`, e.g. a
population mismatch; `[]` for results stored before) and `results.age_band` (the patient's age
band the intended-use check used, e.g. "18-64": never the age itself).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("image_kind", "warnings", "age_band")


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("image_kind", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("age_band", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
