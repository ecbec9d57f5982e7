"""Export and retention against the real Postgres and S3 server: CSV exports of results and of the
audit trail, the audit hash chain (verified, tampering found, never forked by replicas), and the
retention purge (`python -m gateway.purge`) with its checkpoint."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from processes import free_port, gateway_process, run_gateway_command, run_prestart
from support import POSTGRES_ADMIN_DSN, bearer_client, login, throwaway_database


def classification(model: str, label: str, flagged: bool = False):
    from cxr_model.answer import ClassInfo, Classification, OodCheck

    probabilities = {"normal": 0.2, "pneumonia": 0.8} if label == "pneumonia" else {"normal": 0.9, "pneumonia": 0.1}
    return Classification(
        model_name=model,
        model_version="3",
        task="pneumonia",
        classes=[
            ClassInfo(label="normal", name="Normal", finding="No sign of pneumonia"),
            ClassInfo(label="pneumonia", name="Pneumonia", finding="Signs of pneumonia"),
        ],
        label=label,
        probabilities=probabilities,
        positive_class="pneumonia",
        threshold=0.5,
        ood=OodCheck(method="mahalanobis", score=40.0 if flagged else 3.0, threshold=20.0, flagged=flagged),
    )


_STORED: list[str] = []  # ids of the results store_results made, removed after each test


@pytest.fixture(autouse=True)
def remove_stored_results(admin_client):
    """Other tests read the same database (the history pages, say): leave no made-up results behind."""
    yield
    while _STORED:
        admin_client.delete(f"/results/{_STORED.pop()}")  # 404 when a purge removed it already


def store_results(env: dict[str, str], *specs: dict) -> list[dict]:
    """Results as the gateway stores them (rows in Postgres, the image in S3), with chosen ages and
    fields; each spec: model, label, age (timedelta), external_id. Returns their ids and object keys."""
    from gateway.db import make_engine, make_session_factory
    from gateway.models import Image, Result, User
    from gateway.settings import ReaperSettings
    from gateway.storage import make_object_store

    settings = ReaperSettings(database_url=env["DATABASE_URL"], **_storage(env))
    store, engine = make_object_store(settings), make_engine(settings.database_url)
    stored = []
    try:
        with make_session_factory(engine)() as session:
            admin = session.query(User).filter_by(username=env["FIRST_ADMIN_USERNAME"]).one()
            for spec in specs:
                created = datetime.now(UTC) - spec.get("age", timedelta(0))
                image = Image(id=uuid.uuid4(), content_type="image/png", size_bytes=4, sha256="0" * 64)
                image.object_key = f"images/{created:%Y/%m/%d}/{image.id}.png"
                image.created_at = created
                store.put(image.object_key, b"\x89PNG", "image/png")
                result = Result(
                    image=image,
                    classification=classification(spec["model"], spec.get("label", "pneumonia")),
                    external_id=spec.get("external_id"),
                    created_by_id=admin.id,
                    created_at=created,
                )
                session.add_all([image, result])
                session.flush()
                stored.append({"id": str(result.id), "key": image.object_key})
            session.commit()
        _STORED.extend(item["id"] for item in stored)
    finally:
        engine.dispose()
    return stored


def _storage(env: dict[str, str]) -> dict[str, str]:
    names = ("storage_backend", "s3_endpoint_url", "s3_bucket", "s3_access_key_id", "s3_secret_access_key")
    return {name: env[name.upper()] for name in names} | {"environment": "production"}


def read_csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="cxr-')
    return list(csv.DictReader(io.StringIO(response.text)))


def psql(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True)


# --- exports --------------------------------------------------------------------------------


def test_results_export_has_the_list_filters_and_no_more(gateway, admin_client, clinician_client):
    model = f"export-{uuid.uuid4().hex[:8]}"
    stored = store_results(
        gateway.env,
        {"model": model, "label": "pneumonia", "external_id": "-2+3"},
        {"model": model, "label": "normal", "age": timedelta(days=3)},
        {"model": model, "label": "pneumonia", "age": timedelta(days=10)},
    )

    rows = read_csv(admin_client.get("/results/export.csv", params={"model": model}))
    listed = admin_client.get("/results", params={"model": model}).json()["items"]
    assert [row["id"] for row in rows] == [item["id"] for item in listed] == [s["id"] for s in stored]
    first = rows[0]
    assert (first["label"], first["finding"], first["probability"], first["model_name"]) == (
        "pneumonia",
        "Signs of pneumonia",
        "0.8",
        model,
    )
    assert first["external_id"] == "'-2+3", "a cell a spreadsheet would run as a formula is quoted"
    assert first["submitted_by"] == gateway.admin_username and first["submitter_kind"] == "user"
    assert json.loads(first["probabilities"]) == {"normal": 0.2, "pneumonia": 0.8}
    assert "patient" not in ",".join(first).lower()

    since = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    filtered = read_csv(admin_client.get("/results/export.csv", params={"model": model, "since": since}))
    assert [row["id"] for row in filtered] == [s["id"] for s in stored[:2]]
    by_label = read_csv(admin_client.get("/results/export.csv", params={"model": model, "label": "normal"}))
    assert [row["id"] for row in by_label] == [stored[1]["id"]]
    oldest_first = read_csv(admin_client.get("/results/export.csv", params={"model": model, "sort": "created_at"}))
    assert [row["id"] for row in oldest_first] == [s["id"] for s in reversed(stored)]

    assert clinician_client.get("/results/export.csv").status_code == 403
    recorded = admin_client.get("/audit", params={"action": "result.export"}).json()["items"]
    assert recorded[0]["outcome"] == "success" and json.loads(recorded[0]["detail"]) == {"rows": 3, "model": model}
    assert recorded[0]["actor_name"] == gateway.admin_username


def test_an_export_over_the_bound_is_refused_and_recorded(gateway_with, gateway):
    model = f"bound-{uuid.uuid4().hex[:8]}"
    store_results(gateway.env, {"model": model}, {"model": model}, {"model": model, "label": "normal"})
    client = gateway_with(EXPORT_MAX_ROWS="2")
    refused = client.get("/results/export.csv", params={"model": model})
    assert refused.status_code == 422 and refused.json()["code"] == "export_too_large"
    assert len(read_csv(client.get("/results/export.csv", params={"model": model, "label": "pneumonia"}))) == 2
    recorded = client.get("/audit", params={"action": "result.export"}).json()["items"]
    assert any(e["outcome"] == "failure" and e["detail"] == "export_too_large" for e in recorded)


def test_results_export_pages_through_keyset_pages(gateway, monkeypatch):
    # a page of 2 rows: the export reads several pages, each in a session of its own, in the sort's order
    from gateway import crud, export
    from gateway.db import make_engine, make_session_factory
    from gateway.principals import Principal

    model = f"pages-{uuid.uuid4().hex[:8]}"
    stored = store_results(gateway.env, *({"model": model, "age": timedelta(minutes=n)} for n in range(5)))
    monkeypatch.setattr(export, "_PAGE", 2)
    engine = make_engine(gateway.env["DATABASE_URL"])
    admin = Principal("user", uuid.uuid4(), "admin", "admin", True, datetime.now(UTC))
    try:
        text = "".join(export.results_csv(make_session_factory(engine), admin, crud.ResultFilter(model=model), 100))
        capped = "".join(export.results_csv(make_session_factory(engine), admin, crud.ResultFilter(model=model), 3))
    finally:
        engine.dispose()
    assert [row["id"] for row in csv.DictReader(io.StringIO(text))] == [s["id"] for s in stored]
    assert len(list(csv.DictReader(io.StringIO(capped)))) == 3


def test_audit_export_holds_the_chain_and_is_recorded(gateway, admin_client, clinician_client):
    odd_name = f'=HYPERLINK("x")-{uuid.uuid4().hex[:6]}'
    httpx.post(f"{gateway.url}/auth/token", data={"username": odd_name, "password": "wrong"})

    rows = read_csv(admin_client.get("/audit/export.csv", params={"actor": odd_name}))
    assert len(rows) == 1 and rows[0]["actor_name"] == "'" + odd_name
    assert rows[0]["action"] == "auth.login" and rows[0]["outcome"] == "failure"
    assert re.fullmatch(r"[0-9a-f]{64}", rows[0]["hash"]) and int(rows[0]["seq"]) > 0

    everything = read_csv(admin_client.get("/audit/export.csv"))
    sequence = [int(row["seq"]) for row in everything]
    assert sequence == sorted(sequence)
    by_seq = {int(row["seq"]): row for row in everything}
    for seq, row in by_seq.items():
        if seq - 1 in by_seq:
            assert row["prev_hash"] == by_seq[seq - 1]["hash"]

    assert clinician_client.get("/audit/export.csv").status_code == 403
    recorded = admin_client.get("/audit", params={"action": "audit.export"}).json()["items"]
    assert recorded[0]["actor_name"] == gateway.admin_username and json.loads(recorded[0]["detail"])["rows"] > 1


# --- the chain and the purge, on a database of their own ---------------------------------------


@pytest.fixture(scope="module")
def lifecycle(gateway, s3_server, logs_dir):
    """A migrated database and an empty bucket of their own, and a gateway on them."""
    bucket = f"cxr-lifecycle-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    with throwaway_database(POSTGRES_ADMIN_DSN, "cxr_lifecycle") as url:
        env = gateway.env | {"DATABASE_URL": url, "S3_BUCKET": bucket}
        run_prestart(env)
        service = gateway_process(free_port(), env, logs_dir / "gateway-lifecycle.log").start()
        env["URL"] = service.health_url.removesuffix("/health/live")
        yield env
        service.stop()


def append_old_events(env: dict[str, str], count: int, age: timedelta) -> None:
    """Audit events from long ago, appended to the chain as the gateway appends them."""
    from gateway import audit_chain
    from gateway.db import make_engine, make_session_factory
    from gateway.models import AuditEvent

    engine = make_engine(env["DATABASE_URL"])
    try:
        with make_session_factory(engine)() as session:
            for n in range(count):
                event = AuditEvent(actor_name="someone", action="auth.login", outcome="success", detail=f"old {n}")
                event.occurred_at = datetime.now(UTC) - age + timedelta(seconds=n)
                audit_chain.append(session, event)
            session.commit()
    finally:
        engine.dispose()


def verify(env: dict[str, str]) -> tuple[bool, str]:
    try:
        return True, run_gateway_command("audit_verify", env)
    except RuntimeError as failed:
        return False, str(failed)


def purge(env: dict[str, str], **settings: str) -> str:
    return run_gateway_command("purge", env | settings, "--batch-size", "1")


def bucket_keys(s3_server, bucket: str) -> set[str]:
    return {item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_the_purge_removes_what_is_older_than_the_retention_and_the_chain_still_verifies(lifecycle, s3_server):
    # the first test on this database: its old events are the first of the chain
    env = lifecycle
    append_old_events(env, 4, timedelta(days=400))
    old = store_results(env, *({"model": "m", "age": timedelta(days=400 + n)} for n in range(2)))
    recent = store_results(env, {"model": "m", "age": timedelta(days=30)})
    with bearer_client(
        env["URL"], login(env["URL"], env["FIRST_ADMIN_USERNAME"], env["FIRST_ADMIN_PASSWORD"])
    ) as admin:
        assert admin.get("/results").json()["total"] == 3
    ok, output = verify(env)
    assert ok and "audit chain intact" in output, output

    assert "retention is off" in purge(env), "nothing goes without RETENTION_DAYS"
    dry = run_gateway_command("purge", env | {"RETENTION_DAYS": "365"}, "--dry-run")
    assert "dry run: 2 results" in dry

    first = purge(env, RETENTION_DAYS="365", AUDIT_RETENTION_DAYS="0")  # results go, the audit trail stays
    assert "removed 2 results" in first and "(2 images, 0 left for the reaper)" in first and " 0 audit events" in first
    assert {s["key"] for s in old} | {recent[0]["key"]} == {s["key"] for s in old + recent}
    assert bucket_keys(s3_server, env["S3_BUCKET"]) == {recent[0]["key"]}
    with psql(env["DATABASE_URL"]) as database:
        kept = [str(row[0]) for row in database.execute("SELECT id FROM results")]
        assert kept == [recent[0]["id"]]
        assert database.execute("SELECT count(*) FROM images").fetchone()[0] == 1

    second = purge(env, RETENTION_DAYS="365")  # now the audit events before the retention too
    assert "removed 0 results" in second and " 4 audit events" in second
    assert "audit chain anchored after event 4" in second
    ok, output = verify(env)
    assert ok and "anchored after event 4" in output, output
    with psql(env["DATABASE_URL"]) as database:
        assert database.execute("SELECT min(seq) FROM audit_events").fetchone()[0] == 5
        details = [
            json.loads(row[0])
            for row in database.execute("SELECT detail FROM audit_events WHERE action = 'retention.purge' ORDER BY seq")
        ]
    assert [(d["results"], d["audit_events"], d["audit_anchor_seq"]) for d in details] == [(2, 0, 0), (0, 4, 4)]

    again = purge(env, RETENTION_DAYS="365")  # idempotent
    assert "removed 0 results" in again and " 0 audit events" in again
    assert verify(env)[0]
    assert bucket_keys(s3_server, env["S3_BUCKET"]) == {recent[0]["key"]}


def as_superuser(url: str, statement: str) -> None:
    """`statement` with the database's triggers off, as only a superuser can (the audit trail's insert-only
    triggers refuse it otherwise): the tampering the hash chain is there to find."""
    with psql(url) as database, database.transaction():
        database.execute("SET LOCAL session_replication_role = replica")
        database.execute(statement)


def tampered(env, statement: str, restore: str | None = None) -> str:
    """What the verification says after `statement`; `restore` puts things back."""
    as_superuser(env["DATABASE_URL"], statement)
    try:
        ok, output = verify(env)
        assert not ok, f"tampering not found: {statement}"
        return output
    finally:
        if restore:
            as_superuser(env["DATABASE_URL"], restore)


def test_the_verification_finds_a_changed_a_removed_and_a_missing_newest_event(lifecycle):
    env = lifecycle
    with bearer_client(
        env["URL"], login(env["URL"], env["FIRST_ADMIN_USERNAME"], env["FIRST_ADMIN_PASSWORD"])
    ) as admin:
        for _ in range(3):
            admin.get("/results")
    assert verify(env)[0]
    with psql(env["DATABASE_URL"]) as database:
        newest = [row[0] for row in database.execute("SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 3")]
        database.execute("CREATE TABLE audit_saved AS SELECT * FROM audit_events WHERE false")
    middle_seq, head_seq = newest[1], newest[0]

    changed = tampered(
        env,
        f"UPDATE audit_events SET detail = 'nothing happened' WHERE seq = {middle_seq}",
        f"UPDATE audit_events SET detail = NULL WHERE seq = {middle_seq}",
    )
    assert f"event {middle_seq} (result.list) was changed" in changed, changed
    assert verify(env)[0]

    for seq, expected in ((middle_seq, f"event {middle_seq} is missing"), (head_seq, "newer events are missing")):
        with psql(env["DATABASE_URL"]) as database:
            database.execute(f"INSERT INTO audit_saved SELECT * FROM audit_events WHERE seq = {seq}")
        output = tampered(
            env,
            f"DELETE FROM audit_events WHERE seq = {seq}",
            f"INSERT INTO audit_events SELECT * FROM audit_saved WHERE seq = {seq}",
        )
        assert expected in output, output
    assert verify(env)[0]
    with psql(env["DATABASE_URL"]) as database:
        database.execute("DROP TABLE audit_saved")


def test_replicas_append_to_one_chain_and_older_gateways_events_are_chained(lifecycle, logs_dir):
    env = lifecycle
    other = gateway_process(
        free_port(), {k: v for k, v in env.items() if k != "URL"}, logs_dir / "gateway-lifecycle-2.log"
    ).start()
    try:
        urls = [env["URL"], other.health_url.removesuffix("/health/live")]
        token = login(urls[0], env["FIRST_ADMIN_USERNAME"], env["FIRST_ADMIN_PASSWORD"])
        with psql(env["DATABASE_URL"]) as database:  # an event as a gateway before the chain writes it
            database.execute(
                "INSERT INTO audit_events (id, occurred_at, action, outcome, actor_name)"
                " VALUES (%s, now(), 'auth.login', 'success', 'older gateway')",
                (uuid.uuid4(),),
            )
            before = database.execute("SELECT max(seq) FROM audit_events").fetchone()[0]

        def request(n: int) -> int:
            return httpx.get(f"{urls[n % 2]}/results", headers={"Authorization": f"Bearer {token}"}).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(request, range(40))) == {200}
    finally:
        other.stop()
    with psql(env["DATABASE_URL"]) as database:
        seqs = [
            row[0] for row in database.execute("SELECT seq FROM audit_events WHERE seq > %s ORDER BY seq", (before,))
        ]
        unchained = database.execute("SELECT count(*) FROM audit_events WHERE seq IS NULL").fetchone()[0]
    assert seqs == list(range(before + 1, before + 42)) and unchained == 0  # 40 requests and the older event
    ok, output = verify(env)
    assert ok, output


def test_unusual_images_are_counted_per_model():
    from gateway.observability import Metrics

    metrics = Metrics()
    metrics.count_classification("m", "pneumonia", True)()
    metrics.count_classification("m", "normal", False)()
    metrics.count_classification("m", "normal", None)()
    assert metrics.registry.get_sample_value("gateway_unusual_images_total", {"model": "m"}) == 1
    assert metrics.registry.get_sample_value("gateway_classifications_total", {"model": "m", "label": "normal"}) == 2
