"""The model's whole answer in one JSON column of results; the uploader kept once, on the result

`results.classification` holds the answer as the inference service gives it
(`cxr_model.answer.Classification`); of its fields only those results are filtered, sorted and
indexed by stay columns (model_name, model_version, label, ood). The flat copies of the rest
(probabilities, threshold, calibration temperature, OOD score, explanation) are moved into the
JSON. A row stored before this revision becomes the answer as far as it was recorded: its
classes are its probabilities' labels (described by the label itself, as a model card without
class words does), its task and positive class are unknown ("" and null), and its OOD check has
`threshold: null`, which the gateway did not store. `images.uploaded_by_id` and
`uploaded_by_client_id` repeated the result's submitter and are dropped; downgrading copies the
JSON back into the columns and the submitter back onto the image.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FLAT_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("probabilities", sa.JSON()),
    ("threshold", sa.Float()),
    ("calibration_temperature", sa.Float()),
    ("ood_score", sa.Float()),
    ("explanation_method", sa.String(32)),
    ("explanation_class", sa.String(64)),
    ("explanation_region", sa.String(32)),
    ("explanation_heatmap", sa.JSON()),
]
# (column, the table its submitter is in, its foreign key's name as 0001 and 0002 created it on Postgres)
_UPLOADER_COLUMNS = [
    ("uploaded_by_id", "created_by_id", "users", "images_uploaded_by_id_fkey"),
    ("uploaded_by_client_id", "created_by_client_id", "api_clients", "fk_images_uploaded_by_client_id"),
]
_BATCH = 500

results = sa.table(
    "results",
    sa.column("id", sa.Uuid()),
    sa.column("model_name", sa.String()),
    sa.column("model_version", sa.String()),
    sa.column("label", sa.String()),
    sa.column("ood", sa.Boolean()),
    sa.column("classification", sa.JSON()),
    *(sa.column(name, column_type) for name, column_type in _FLAT_COLUMNS),
)


def _rewrite(columns: Sequence[str], values: Callable[[sa.Row[Any]], dict[str, Any]]) -> None:
    """Set `columns` of every result to `values(row)`, in batches."""
    connection = op.get_bind()
    assignments: dict[str, Any] = {column: sa.bindparam(f"new_{column}") for column in columns}
    update = sa.update(results).where(results.c.id == sa.bindparam("result_id")).values(assignments)
    rows = iter(connection.execute(sa.select(results)).all())
    while batch := list(islice(rows, _BATCH)):
        parameters = [{"result_id": row.id} | {f"new_{k}": v for k, v in values(row).items()} for row in batch]
        connection.execute(update, parameters)


def _answer(row: sa.Row[Any]) -> dict[str, Any]:
    probabilities = row.probabilities or {}
    ood = row.ood
    heatmap = row.explanation_heatmap
    return {
        "model_name": row.model_name,
        "model_version": row.model_version,
        "task": "",
        "classes": [{"label": label, "name": label, "finding": f"Model output: {label}"} for label in probabilities],
        "label": row.label,
        "probabilities": probabilities,
        "positive_class": None,
        "threshold": row.threshold,
        "calibration": (
            {"method": "temperature", "temperature": row.calibration_temperature}
            if row.calibration_temperature is not None
            else None
        ),
        "ood": (
            {"method": "mahalanobis", "score": row.ood_score, "threshold": None, "flagged": ood}
            if ood is not None and row.ood_score is not None
            else None
        ),
        "explanation": (
            {
                "method": row.explanation_method or "",
                "class": row.explanation_class or row.label,
                "region": row.explanation_region or "none",
                "heatmap": heatmap,
            }
            if heatmap
            else None
        ),
    }


def _flat(row: sa.Row[Any]) -> dict[str, Any]:
    answer = row.classification
    calibration, ood, explanation = answer.get("calibration"), answer.get("ood"), answer.get("explanation")
    return {
        "probabilities": answer["probabilities"],
        "threshold": answer.get("threshold"),
        "calibration_temperature": calibration["temperature"] if calibration else None,
        "ood_score": ood["score"] if ood else None,
        "explanation_method": explanation["method"] if explanation else None,
        "explanation_class": explanation["class"] if explanation else None,
        "explanation_region": explanation["region"] if explanation else None,
        "explanation_heatmap": explanation["heatmap"] if explanation else None,
    }


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("classification", sa.JSON(), nullable=True))
    _rewrite(["classification"], lambda row: {"classification": _answer(row)})
    with op.batch_alter_table("results") as batch:
        batch.alter_column("classification", existing_type=sa.JSON(), nullable=False)
        for name, _ in _FLAT_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint("fk_images_uploaded_by_client_id", type_="foreignkey")
        for column, *_ in _UPLOADER_COLUMNS:
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        for column, _, table, foreign_key in _UPLOADER_COLUMNS:
            batch.add_column(sa.Column(column, sa.Uuid(), nullable=True))
            batch.create_foreign_key(foreign_key, table, [column], ["id"])
    for column, submitter, *_ in _UPLOADER_COLUMNS:
        op.execute(f"UPDATE images SET {column} = (SELECT r.{submitter} FROM results r WHERE r.image_id = images.id)")
    with op.batch_alter_table("results") as batch:
        for name, column_type in _FLAT_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=True))
    _rewrite([name for name, _ in _FLAT_COLUMNS], _flat)
    with op.batch_alter_table("results") as batch:
        batch.alter_column("probabilities", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("classification")
