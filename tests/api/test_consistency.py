"""Rows and objects stay consistent: a failed database write removes its object; the reaper removes orphans."""

import uuid
from contextlib import contextmanager

import pytest

from processes import run_gateway_command


def run_reaper(gateway, minutes: float) -> str:
    return run_gateway_command("reaper", gateway.env, "--older-than-minutes", str(minutes))


def test_the_reaper_removes_old_orphans_and_keeps_referenced_objects(gateway, admin_client, s3_server, sample_xrays):
    kept = admin_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()
    orphan = f"images/2026/01/01/{uuid.uuid4()}.jpg"  # as a crash between the object and the row would leave it
    orphan_heatmap = f"images/2026/01/01/{uuid.uuid4()}.heatmap.png"  # an overlay stored under schema 0004
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=orphan, Body=b"\xff\xd8\xff orphan")
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=orphan_heatmap, Body=b"\x89PNG\r\n\x1a\n orphan")

    assert "0 orphaned objects removed" in run_reaper(gateway, minutes=10)  # still inside the grace period
    assert {orphan, orphan_heatmap} <= set(s3_server.keys())

    output = run_reaper(gateway, minutes=0)

    assert f"removed orphan {orphan}" in output and f"removed orphan {orphan_heatmap}" in output
    assert not {orphan, orphan_heatmap} & set(s3_server.keys())
    assert admin_client.get(kept["image"]["url"]).status_code == 200  # objects with rows are untouched
    assert admin_client.get(kept["explanation"]["heatmap_url"]).status_code == 200


def test_every_result_row_has_its_object(database, s3_server):
    keys = {row[0] for row in database.execute("SELECT object_key FROM images")}
    database.commit()
    assert keys and keys <= set(s3_server.keys())


@contextmanager
def refused_inserts(database, table: str, condition: str):
    """Postgres refuses the rows of `table` for which `condition` (on NEW) holds, as a failing database would."""
    database.execute(
        f"CREATE FUNCTION refuse_{table}() RETURNS trigger AS $$ BEGIN "
        f"IF {condition} THEN RAISE EXCEPTION 'refused for the test'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql"
    )
    database.execute(
        f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
    )
    database.commit()
    try:
        yield
    finally:
        database.execute(f"DROP TRIGGER refuse_{table} ON {table}")
        database.execute(f"DROP FUNCTION refuse_{table}()")
        database.commit()


@pytest.fixture
def failing_result_inserts(database):
    """Postgres refuses to insert results carrying external_id 'refuse-this-row'."""
    with refused_inserts(database, "results", "NEW.external_id = 'refuse-this-row'"):
        yield "refuse-this-row"


def test_a_failed_database_write_removes_the_stored_object(
    admin_client, sample_xrays, database, s3_server, failing_result_inserts
):
    rows = database.execute("SELECT count(*) FROM images").fetchone()[0]
    database.commit()
    objects = len(s3_server.keys())

    response = admin_client.post(
        "/classify",
        files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())},
        data={"external_id": failing_result_inserts},
    )

    assert response.status_code == 503 and response.json()["code"] == "database_unavailable"
    assert database.execute("SELECT count(*) FROM images").fetchone()[0] == rows
    assert len(s3_server.keys()) == objects  # the image is not left behind


@pytest.fixture
def failing_classify_audits(database):
    """Postgres refuses to store the audit event of a successful classification."""
    with refused_inserts(database, "audit_events", "NEW.action = 'result.classify' AND NEW.outcome = 'success'"):
        yield


def test_a_result_is_never_stored_without_its_audit_event(
    admin_client, sample_xrays, database, s3_server, failing_classify_audits
):
    rows = database.execute("SELECT count(*) FROM results").fetchone()[0]
    database.commit()
    objects = len(s3_server.keys())

    response = admin_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})

    assert response.status_code == 503 and response.json()["code"] == "database_unavailable"
    assert database.execute("SELECT count(*) FROM results").fetchone()[0] == rows
    database.commit()
    assert len(s3_server.keys()) == objects


def test_the_reaper_works_on_the_embedded_folder_store(tmp_path):
    """The same reaper on the local folder store and SQLite (the embedded run)."""
    from datetime import timedelta

    from alembic import command

    from cxr_model.answer import Classification, ClassInfo
    from gateway.db import make_engine, make_session_factory
    from gateway.models import Image, Result
    from gateway.prestart import alembic_config
    from gateway.reaper import reap_orphans
    from gateway.settings import Settings
    from gateway.storage import LocalObjectStore

    database_url = f"sqlite:///{tmp_path / 'cxr.db'}"
    command.upgrade(alembic_config(database_url), "head")
    settings = Settings(environment="development", storage_backend="local", local_storage_dir=tmp_path / "objects")
    store = LocalObjectStore(settings)
    kept, orphan = "images/2026/01/01/kept.jpg", "images/2026/01/01/orphan.jpg"
    old_overlay = "images/2026/01/01/kept.heatmap.png"  # stored beside its image under schema 0004
    for key in (kept, old_overlay, orphan, "elsewhere/not-an-image.txt"):
        store.put(key, b"bytes", "image/jpeg")
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        image = Image(object_key=kept, content_type="image/jpeg", size_bytes=5, sha256="0")
        answer = Classification(
            model_name="m",
            model_version="1",
            classes=[ClassInfo(label=label, name=label, finding=label) for label in ("normal", "other")],
            label="normal",
            probabilities={"normal": 0.9, "other": 0.1},
        )
        result = Result(image=image, classification=answer)
        session.add_all([image, result])
        session.commit()
        assert reap_orphans(session, store, timedelta(minutes=10)) == []
        assert reap_orphans(session, store, timedelta(0)) == sorted([old_overlay, orphan])
    engine.dispose()
    assert sorted(stored.key for stored in store.list_objects("")) == ["elsewhere/not-an-image.txt", kept]
