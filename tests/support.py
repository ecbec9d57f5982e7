"""Small helpers the tests share (imported by conftest.py and test modules)."""

import os
import uuid
from contextlib import contextmanager

import httpx

POSTGRES_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def login(base_url: str, username: str, password: str) -> str:
    """A bearer token from the gateway's real login endpoint."""
    response = httpx.post(f"{base_url}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@contextmanager
def throwaway_database(admin_dsn: str, prefix: str = "cxr_test"):
    """A new, empty database on the real Postgres server (its SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = dict(item.split("=", 1) for item in admin_dsn.split())
    try:
        yield f"postgresql+psycopg://{params['user']}@{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
