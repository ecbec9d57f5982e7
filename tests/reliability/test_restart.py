"""Stop and start the whole stack: every result and its image are still there and readable
through the API, and re-running the migrations changes nothing.

Restarted: Postgres (pg_ctl stop -m fast, start), the S3 relay, the inference service and the
gateway. moto's S3 server stays up: it keeps objects in memory, so a restart of it would be a
wipe, not a test of durability.
"""

import asyncio
import hashlib

import httpx
import psycopg
from support import login, run_async

from reliability import evidence
from reliability.load import keepalive_limits, run_load
from reliability.reconcile import reconcile
from reliability.stack import BUCKET

RESTARTED = "Postgres, S3 relay, inference, gateway; moto S3 kept up"


def schema_and_accounts(database_dsn: str) -> tuple:
    """What a migration or the first-admin step could change: columns, indexes, revision, accounts."""
    with psycopg.connect(database_dsn) as connection:
        columns = connection.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        users = connection.execute("SELECT id, username, hashed_password FROM users ORDER BY id").fetchall()
        return columns, indexes, revision, users


def result_ids(database_dsn: str) -> set[str]:
    with psycopg.connect(database_dsn) as connection:
        return {result_id for (result_id,) in connection.execute("SELECT id::text FROM results")}


def listed_results(client: httpx.Client) -> list[dict]:
    items, offset = [], 0
    while True:
        page = client.get("/results", params={"limit": 200, "offset": offset})
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        offset += len(body["items"])
        if not body["items"] or offset >= body["total"]:
            return items


def heatmap_url(result: dict) -> str | None:
    return result.get("heatmap_url") or (result.get("explanation") or {}).get("heatmap_url")


async def unreadable(gateway_url: str, token: str, results: list[dict], concurrency: int = 16) -> list[str]:
    """The results whose image (or heatmap) cannot be read back intact through the API."""
    gate = asyncio.Semaphore(concurrency)

    async def readable(client: httpx.AsyncClient, result: dict) -> bool:
        async with gate:
            image = await client.get(result["image"]["url"])
            if image.status_code != 200 or hashlib.sha256(image.content).hexdigest() != result["image"]["sha256"]:
                return False
            return not heatmap_url(result) or (await client.get(heatmap_url(result))).status_code == 200

    headers = {"Authorization": f"Bearer {token}"}
    limits = keepalive_limits(concurrency)
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=60, limits=limits) as client:
        checks = await asyncio.gather(*(readable(client, result) for result in results))
    return [result["id"] for result, ok in zip(results, checks, strict=True) if not ok]


def test_results_and_images_survive_a_restart_of_the_whole_stack(stack, service_token, images, history):
    history.outcomes += run_async(run_load(stack.url, service_token, images, requests=64)).outcomes
    before_ids, before_schema = result_ids(stack.database_dsn), schema_and_accounts(stack.database_dsn)

    stack.stop_services()
    stack.start_services()
    printed = stack.prestart()

    assert schema_and_accounts(stack.database_dsn) == before_schema  # the migrations re-run were a no-op
    assert "Created administrator" not in printed
    token = login(stack.url, stack.env["FIRST_ADMIN_USERNAME"], stack.env["FIRST_ADMIN_PASSWORD"])
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as admin:
        results = listed_results(admin)
    broken = run_async(unreadable(stack.url, token, results))
    found = reconcile(stack.database_dsn, stack.s3_client(), BUCKET, history)
    numbers = {
        "results": len(results),
        "images_read": len(results) - len(broken),
        "unreadable": broken[:10],
        "restarted": RESTARTED,
        "migrations": "no-op (schema, revision and accounts unchanged)",
        "reconciliation": found.summary(),
    }
    evidence.record("durability", numbers | {"passed": False})

    assert {result["id"] for result in results} == before_ids
    assert broken == []
    assert found.exact, found.problems()
    evidence.record("durability", numbers | {"passed": True})
