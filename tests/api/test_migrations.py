"""Alembic migrations upgrade an empty database to head and back down, on SQLite and Postgres."""

import json
import uuid

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
    "audit_chain",
    "organisations",
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


IMAGE_ID, RESULT_ID, USER_ID = (f"{n:032x}" for n in (11, 12, 13))
HEATMAP = [[0.0, 0.5], [1.0, 0.25]]


def _result_row_at_0005(connection) -> None:
    """A user's result as schema 0005 stored it: flat columns, and the uploader on the image too."""
    connection.execute(
        text(
            "INSERT INTO users (id, username, hashed_password, role, is_active, created_at)"
            " VALUES (:id, 'someone', 'x', 'clinician', true, '2026-11-30')"
        ),
        {"id": USER_ID},
    )
    connection.execute(
        text(
            "INSERT INTO images (id, object_key, content_type, size_bytes, sha256, uploaded_by_id, created_at)"
            " VALUES (:id, 'images/b.jpg', 'image/jpeg', 1, 's', :user, '2026-11-30')"
        ),
        {"id": IMAGE_ID, "user": USER_ID},
    )
    connection.execute(
        text(
            "INSERT INTO results (id, image_id, model_name, model_version, label, probabilities, threshold,"
            " calibration_temperature, ood, ood_score, explanation_method, explanation_class, explanation_region,"
            " explanation_heatmap, created_by_id, created_at) VALUES (:id, :image, 'pneumonia-xray', '3',"
            " 'pneumonia', :probabilities, 0.5, 1.7, true, 42.5, 'CAM', 'pneumonia', 'center_square', :heatmap,"
            " :user, '2026-11-30')"
        ),
        {
            "id": RESULT_ID,
            "image": IMAGE_ID,
            "user": USER_ID,
            "probabilities": json.dumps({"normal": 0.25, "pneumonia": 0.75}),
            "heatmap": json.dumps(HEATMAP),
        },
    )


def _json(value):
    return json.loads(value) if isinstance(value, str) else value  # SQLite hands JSON back as text


def test_0006_moves_the_flat_answer_into_one_json_column_and_back(empty_database_url):
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    command.upgrade(config, "0005")
    with engine.begin() as connection:
        _result_row_at_0005(connection)

    command.upgrade(config, "0006")
    inspector = inspect(engine)
    result_columns = {c["name"] for c in inspector.get_columns("results")}
    assert {"classification", "label", "model_name", "model_version", "ood"} <= result_columns
    assert not {"probabilities", "threshold", "calibration_temperature", "ood_score"} & result_columns
    assert not {c for c in result_columns if c.startswith("explanation_")}
    assert not {"uploaded_by_id", "uploaded_by_client_id"} & {c["name"] for c in inspector.get_columns("images")}
    with engine.connect() as connection:
        label, ood, stored = connection.execute(text("SELECT label, ood, classification FROM results")).one()
    assert (label, ood) == ("pneumonia", True)
    assert _json(stored) == {
        "model_name": "pneumonia-xray",
        "model_version": "3",
        "task": "",
        "classes": [
            {"label": "normal", "name": "normal", "finding": "Model output: normal"},
            {"label": "pneumonia", "name": "pneumonia", "finding": "Model output: pneumonia"},
        ],
        "label": "pneumonia",
        "probabilities": {"normal": 0.25, "pneumonia": 0.75},
        "positive_class": None,
        "threshold": 0.5,
        "calibration": {"method": "temperature", "temperature": 1.7},
        "ood": {"method": "mahalanobis", "score": 42.5, "threshold": None, "flagged": True},
        "explanation": {"method": "CAM", "class": "pneumonia", "region": "center_square", "heatmap": HEATMAP},
    }

    command.downgrade(config, "0005")
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT r.label, r.probabilities, r.threshold, r.calibration_temperature, r.ood, r.ood_score,"
                " r.explanation_method, r.explanation_class, r.explanation_region, r.explanation_heatmap,"
                " i.uploaded_by_id, i.uploaded_by_client_id FROM results r JOIN images i ON i.id = r.image_id"
            )
        ).one()
    assert "classification" not in {c["name"] for c in inspect(engine).get_columns("results")}
    label, probabilities, *flat, heatmap, uploader, client = row
    assert (label, _json(probabilities), *flat, _json(heatmap)) == (
        "pneumonia",
        {"normal": 0.25, "pneumonia": 0.75},
        0.5,
        1.7,
        True,
        42.5,
        "CAM",
        "pneumonia",
        "center_square",
        HEATMAP,
    )
    assert uuid.UUID(str(uploader)) == uuid.UUID(USER_ID) and client is None
    command.downgrade(config, "base")
    engine.dispose()


def test_0008_adds_what_the_intended_use_gate_saw_to_results_and_removes_it(empty_database_url):
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    added = {"image_kind", "warnings", "age_band"}
    command.upgrade(config, "0005")
    with engine.begin() as connection:
        _result_row_at_0005(connection)

    command.upgrade(config, "0008")
    assert added <= {c["name"] for c in inspect(engine).get_columns("results")}
    with engine.connect() as connection:  # a result from before the gate: no kind, no warnings, no age band
        kind, warnings, band = connection.execute(text("SELECT image_kind, warnings, age_band FROM results")).one()
    assert (kind, _json(warnings), band) == (None, [], None)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE results SET image_kind = :kind, warnings = :warnings, age_band = '18-64'"),
            {
                "kind": json.dumps({"label": "chest_xray", "name": "Chest X-ray", "probability": 0.99, "model": "k/1"}),
                "warnings": json.dumps(
                    [{"code": "population_mismatch", "detail": "d", "found": "18-64", "accepted": []}]
                ),
            },
        )

    command.downgrade(config, "0007")
    assert not added & {c["name"] for c in inspect(engine).get_columns("results")}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT label FROM results")).scalar_one() == "pneumonia"
    command.downgrade(config, "base")
    engine.dispose()


def _audit_events_at_0006(connection) -> list[str]:
    """Three events as schema 0006 stored them (no chain), written out of time order; returns their ids."""
    ids = [f"{n:032x}" for n in (23, 21, 22)]
    for event_id, moment in zip(
        ids, ("2026-11-30 10:00:02.000000", "2026-11-30 10:00:00.000000", "2026-11-30 10:00:01.500000"), strict=True
    ):
        connection.execute(
            text(
                "INSERT INTO audit_events (id, occurred_at, actor_kind, actor_id, actor_name, action, target, outcome,"
                " ip, request_id, detail) VALUES (:id, :at, 'user', 'u', 'someone', 'auth.login', NULL, 'success',"
                " '127.0.0.1', 'r', 'Zürich, \"quoted\"')"
            ),
            {"id": event_id, "at": moment},
        )
    return ids


def test_0007_chains_the_stored_audit_events_and_adds_the_account_columns(empty_database_url):
    from gateway import audit_chain
    from gateway.db import make_engine, make_session_factory

    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    command.upgrade(config, "0006")
    with engine.begin() as connection:
        later, earliest, middle = _audit_events_at_0006(connection)
        _result_row_at_0005_users_only(connection)

    command.upgrade(config, "0007")
    inspector = inspect(engine)
    assert {"seq", "prev_hash", "hash"} <= {c["name"] for c in inspector.get_columns("audit_events")}
    assert {"ix_audit_events_seq", "ix_audit_events_unchained"} <= {
        index["name"] for index in inspector.get_indexes("audit_events")
    }
    assert {"must_change_password", "session_epoch"} <= {c["name"] for c in inspector.get_columns("users")}
    with engine.connect() as connection:
        chained = connection.execute(text("SELECT id, seq, prev_hash, hash FROM audit_events ORDER BY seq")).all()
        head = connection.execute(text("SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain")).one()
        must_change, epoch = connection.execute(text("SELECT must_change_password, session_epoch FROM users")).one()
    assert [uuid.UUID(str(row.id)) for row in chained] == [uuid.UUID(i) for i in (earliest, middle, later)]
    assert [row.seq for row in chained] == [1, 2, 3]
    assert chained[0].prev_hash == audit_chain.GENESIS_HASH
    assert [row.prev_hash for row in chained[1:]] == [row.hash for row in chained[:-1]]
    assert tuple(head) == (3, chained[-1].hash, 0, audit_chain.GENESIS_HASH)
    assert not must_change and epoch == 0
    sessions = make_engine(empty_database_url)
    with make_session_factory(sessions)() as session:  # the migration's hashes are the code's
        report = audit_chain.verify(session)
    sessions.dispose()
    assert report.ok and report.checked == 3, report.problems

    command.downgrade(config, "0006")
    inspector = inspect(engine)
    assert "audit_chain" not in inspector.get_table_names()
    assert not {"seq", "prev_hash", "hash"} & {c["name"] for c in inspector.get_columns("audit_events")}
    assert not {"must_change_password", "session_epoch"} & {c["name"] for c in inspector.get_columns("users")}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 3
    command.downgrade(config, "base")
    engine.dispose()


def _result_row_at_0005_users_only(connection) -> None:
    connection.execute(
        text(
            "INSERT INTO users (id, username, hashed_password, role, is_active, created_at)"
            " VALUES (:id, 'someone-else', 'x', 'clinician', true, '2026-11-30 00:00:00.000000')"
        ),
        {"id": f"{31:032x}"},
    )


def test_0009_puts_everything_in_the_default_organisation_keys_accession_numbers_and_makes_audit_insert_only(
    empty_database_url, monkeypatch
):
    from gateway.models import DEFAULT_ORGANISATION_ID
    from gateway.pseudonyms import accession_digest

    secret = "d" * 40
    monkeypatch.setenv("DEIDENTIFICATION_UID_SECRET", secret)
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    command.upgrade(config, "0005")
    with engine.begin() as connection:
        _result_row_at_0005(connection)
    command.upgrade(config, "0008")
    with engine.begin() as connection:
        connection.execute(text("UPDATE results SET accession_number = 'ACC-123'"))
        _audit_events_at_0006(connection)  # chained on the next append; unchained rows may still be sealed

    command.upgrade(config, "0009")
    with engine.connect() as connection:
        (organisation,) = connection.execute(text("SELECT id FROM organisations WHERE name = 'default'")).one()
        scoped = [
            connection.execute(text(f"SELECT organisation_id FROM {t}")).scalar_one() for t in ("users", "results")
        ]
        stored = connection.execute(text("SELECT accession_number FROM results")).scalar_one()
    assert uuid.UUID(str(organisation)) == DEFAULT_ORGANISATION_ID
    assert [uuid.UUID(str(value)) for value in scoped] == [DEFAULT_ORGANISATION_ID] * 2
    assert stored == accession_digest("ACC-123", secret) and "ACC" not in stored

    with engine.begin() as connection:  # sealing an unchained event (its content unchanged) is allowed
        connection.execute(
            text(
                "UPDATE audit_events SET seq = 7, prev_hash = 'p', hash = 'h' WHERE seq IS NULL AND detail LIKE 'Z%' AND occurred_at = (SELECT min(occurred_at) FROM audit_events)"
            )
        )
    refusals = [
        "UPDATE audit_events SET detail = 'rewritten' WHERE seq = 7",
        "UPDATE audit_events SET actor_name = 'someone else' WHERE seq IS NULL",
        "DELETE FROM audit_events WHERE seq = 7",
        "DELETE FROM audit_events WHERE seq IS NULL",
    ]
    if engine.dialect.name == "postgresql":
        refusals.append("TRUNCATE audit_events")
    for statement in refusals:
        with pytest.raises(Exception, match="audit events are insert-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with engine.begin() as connection:  # the purge's way: the anchor first, then the events behind it
        connection.execute(text("UPDATE audit_chain SET anchor_seq = 7"))
        connection.execute(text("DELETE FROM audit_events WHERE seq <= 7"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 2

    command.downgrade(config, "0008")
    inspector = inspect(engine)
    assert "organisations" not in inspector.get_table_names()
    assert "organisation_id" not in {c["name"] for c in inspector.get_columns("results")}
    assert "session_started_at" not in {c["name"] for c in inspector.get_columns("refresh_tokens")}
    with engine.begin() as connection:  # the triggers are gone with it
        connection.execute(text("DELETE FROM audit_events"))
        assert connection.execute(text("SELECT accession_number FROM results")).scalar_one() is None
    command.downgrade(config, "base")
    engine.dispose()
