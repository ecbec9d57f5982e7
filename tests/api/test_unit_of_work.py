"""One unit of work per request: each request commits exactly once, its audit event with its work.

The gateway runs in this process (`app` in conftest.py), so that SQLAlchemy's session events
can count its commits.
"""

import uuid

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from support import stored_counts


@pytest.fixture
def commits(app):
    """The commits of the app's sessions, counted as they happen (`commits.clear()` between requests)."""
    counted: list[object] = []

    def count(session):
        counted.append(session)

    event.listen(app.state.session_factory, "after_commit", count)
    yield counted
    event.remove(app.state.session_factory, "after_commit", count)


def committed_once(commits, response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert len(commits) == 1, f"{len(commits)} commits"
    commits.clear()
    return response.json()


def test_each_request_commits_once(app_client, commits, gateway, sample_xrays):
    commits.clear()
    password = "pw-" + uuid.uuid4().hex
    created = app_client.post("/users", json={"username": f"uow-{uuid.uuid4().hex[:10]}", "password": password})
    user = committed_once(commits, created, 201)

    login = app_client.post("/auth/token", data={"username": user["username"], "password": password})
    tokens = committed_once(commits, login, 200)

    refreshed = app_client.post("/auth/refresh", data={"refresh_token": tokens["refresh_token"]})
    committed_once(commits, refreshed, 200)

    classified = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    result = committed_once(commits, classified, 201)

    trail = app_client.get("/audit", params={"action": "result.classify", "actor": gateway.admin_username}).json()
    assert trail["items"][0]["target"] == f"result:{result['id']}" and trail["items"][0]["outcome"] == "success"


def test_a_refused_request_commits_once_and_keeps_its_failure_event(app_client, commits, gateway):
    commits.clear()
    refused = app_client.post("/classify", files={"file": ("x.gif", b"GIF89a" + b"\x00" * 64)})
    assert committed_once(commits, refused, 415)["code"] == "unsupported_media_type"

    wrong = app_client.post("/auth/token", data={"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "wrong"})
    assert committed_once(commits, wrong, 401)["code"] == "invalid_credentials"

    trail = app_client.get("/audit", params={"action": "result.classify", "actor": gateway.admin_username}).json()
    assert (trail["items"][0]["outcome"], trail["items"][0]["detail"]) == ("failure", "unsupported_media_type")


@pytest.fixture
def failing_commit(app, app_client):
    """The next commit fails after its rows were flushed, as when the database goes away during COMMIT."""

    def fail(_session):
        event.remove(app.state.session_factory, "before_commit", fail)
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection unexpectedly"))

    event.listen(app.state.session_factory, "before_commit", fail)
    yield
    if event.contains(app.state.session_factory, "before_commit", fail):
        event.remove(app.state.session_factory, "before_commit", fail)


def test_a_commit_that_fails_is_a_503_and_keeps_the_object_for_the_reaper(
    app_client, database, s3_server, sample_xrays, failing_commit
):
    """The commit's outcome is unknown: removing the object could leave a row without its image."""
    rows, results, objects = stored_counts(database, s3_server)
    keys = set(s3_server.keys())

    response = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})

    assert response.status_code == 503 and response.json()["code"] == "database_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert stored_counts(database, s3_server) == (rows, results, objects + 1)
    (orphan,) = set(s3_server.keys()) - keys
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key=orphan)  # what the reaper would do
