"""Alembic migrations upgrade an empty database to head and back down, on SQLite and Postgres."""

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from gateway.models import Base
from gateway.prestart import alembic_config
from support import POSTGRES_ADMIN_DSN, throwaway_database

EXPECTED_TABLES = {
    "users",
    "api_clients",
    "images",
    "results",
    "refresh_tokens",
    "revoked_access_tokens",
    "login_throttles",
    "audit_events",
    "alembic_version",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    with throwaway_database(POSTGRES_ADMIN_DSN, "cxr_migrations") as url:
        yield url


def test_upgrade_to_head_matches_the_models_and_downgrade_empties(empty_database_url):
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)

    command.upgrade(config, "head")
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == EXPECTED_TABLES
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys())
    for table in Base.metadata.sorted_tables:
        declared = {index.name for index in table.indexes}
        assert declared <= {index["name"] for index in inspector.get_indexes(table.name)}, table.name
    assert {"ix_results_created_at", "ix_results_created_by_id", "ix_results_created_by_client_id"} <= {
        index["name"] for index in inspector.get_indexes("results")
    }

    command.downgrade(config, "0001")
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == {"users", "images", "results", "alembic_version"}
    assert "created_by_client_id" not in {c["name"] for c in inspector.get_columns("results")}
    assert not next(c for c in inspector.get_columns("results") if c["name"] == "created_by_id")["nullable"]

    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_0004_adds_and_removes_the_calibration_ood_and_heatmap_columns(empty_database_url):
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    added = {
        "calibration_temperature",
        "ood",
        "ood_score",
        "explanation_method",
        "explanation_class",
        "heatmap_object_key",
    }

    command.upgrade(config, "0004")
    inspector = inspect(engine)
    assert added <= {c["name"] for c in inspector.get_columns("results")}
    assert "ix_results_ood_created_at" in {index["name"] for index in inspector.get_indexes("results")}

    command.downgrade(config, "0003")
    inspector = inspect(engine)
    assert not added & {c["name"] for c in inspector.get_columns("results")}
    assert "ix_results_ood_created_at" not in {index["name"] for index in inspector.get_indexes("results")}
    engine.dispose()


def test_0005_moves_the_heatmap_into_the_result_row_and_back(empty_database_url):
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    command.upgrade(config, "0004")
    with engine.begin() as connection:  # a result classified under 0004, its overlay stored as an object
        connection.execute(
            text(
                "INSERT INTO images (id, object_key, content_type, size_bytes, sha256, created_at)"
                " VALUES ('00000000000000000000000000000001', 'images/a.jpg', 'image/jpeg', 1, 's', '2026-11-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO results (id, image_id, model_name, model_version, label, probabilities,"
                " heatmap_object_key, explanation_method, created_by_id, created_at) VALUES"
                " ('00000000000000000000000000000002', '00000000000000000000000000000001', 'm', '1', 'normal',"
                " '{}', 'images/a.heatmap.png', 'CAM', NULL, '2026-11-01')"
            )
        )

    command.upgrade(config, "0005")
    inspector = inspect(engine)
    assert {"explanation_region", "explanation_heatmap"} <= {c["name"] for c in inspector.get_columns("results")}
    assert "heatmap_object_key" not in {c["name"] for c in inspector.get_columns("results")}
    assert {"width", "height"} <= {c["name"] for c in inspector.get_columns("images")}
    with engine.connect() as connection:  # the result is kept; its old overlay is now an orphan for the reaper
        kept = connection.execute(text("SELECT label, explanation_method, explanation_heatmap FROM results")).all()
    assert kept == [("normal", "CAM", None)]

    command.downgrade(config, "0004")
    inspector = inspect(engine)
    assert "heatmap_object_key" in {c["name"] for c in inspector.get_columns("results")}
    assert not {"explanation_region", "explanation_heatmap"} & {c["name"] for c in inspector.get_columns("results")}
    assert not {"width", "height"} & {c["name"] for c in inspector.get_columns("images")}
    engine.dispose()
