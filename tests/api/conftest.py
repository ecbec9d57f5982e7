"""The gateway's app in this process (FastAPI's TestClient), on the shared database, object store and
inference service: for what only the app itself shows (its session events, its inference client)."""

import logging

import pytest


@pytest.fixture
def app(gateway, monkeypatch):
    """The app with the running gateway's settings; its logging setup is undone afterwards."""
    from gateway.main import create_app
    from gateway.settings import Settings

    for name, value in gateway.env.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield create_app(Settings())
    finally:
        root.handlers[:], root.level = handlers, level


@pytest.fixture
def app_client(app, gateway):
    """A TestClient of the app, signed in as the administrator."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        credentials = {"username": gateway.admin_username, "password": gateway.admin_password}
        token = client.post("/auth/token", data=credentials).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client
