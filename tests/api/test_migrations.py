"""Alembic migrations upgrade an empty database to head and back down, on SQLite and Postgres."""

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from gateway.models import Base
from gateway.prestart import alembic_config
from support import POSTGRES_ADMIN_DSN, throwaway_database

EXPECTED_TABLES = {"users", "images", "results", "alembic_version"}


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
    assert "ix_results_created_at" in {index["name"] for index in inspector.get_indexes("results")}

    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
