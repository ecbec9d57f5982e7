"""The audit trail records sign-ins, token use and every access to results, and admins can search it."""

import uuid
from datetime import datetime, timedelta, timezone

import httpx

from support import bearer_client, login, new_user


def events(admin_client, **filters) -> list[dict]:
    response = admin_client.get("/audit", params=filters)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_logins_are_recorded_with_outcome_ip_and_request_id(gateway, admin_client):
    username, password = new_user(admin_client)
    request_id = f"req-{uuid.uuid4().hex}"
    httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": "wrong"})
    ok = httpx.post(
        f"{gateway.url}/auth/token",
        data={"username": username, "password": password},
        headers={"X-Request-ID": request_id},
    )
    assert ok.headers["x-request-id"] == request_id

    recorded = events(admin_client, actor=username, action="auth.login")
    assert [e["outcome"] for e in recorded] == ["success", "failure"]  # newest first
    success = recorded[0]
    assert success["actor_kind"] == "user" and success["actor_name"] == username
    assert success["ip"] == "127.0.0.1" and success["request_id"] == request_id
    assert recorded[1]["actor_id"] is None  # a failed sign-in proves no identity


def test_refresh_and_logout_are_recorded(gateway, admin_client):
    username, password = new_user(admin_client)
    tokens = httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password}).json()
    rotated = httpx.post(f"{gateway.url}/auth/refresh", data={"refresh_token": tokens["refresh_token"]}).json()
    httpx.post(f"{gateway.url}/auth/refresh", data={"refresh_token": tokens["refresh_token"]})
    httpx.post(f"{gateway.url}/auth/logout", headers={"Authorization": f"Bearer {rotated['access_token']}"})

    actions = [(e["action"], e["outcome"]) for e in events(admin_client, actor=username)]
    assert actions == [
        ("auth.logout", "success"),
        ("auth.refresh", "denied"),
        ("auth.refresh", "success"),
        ("auth.login", "success"),
    ]


def test_classify_view_image_and_delete_are_recorded(gateway, admin_client, sample_xrays):
    username, password = new_user(admin_client)
    with bearer_client(gateway.url, login(gateway.url, username, password)) as clinician:
        created = clinician.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()
        clinician.get(f"/results/{created['id']}")
        clinician.get(created["image"]["url"])
    assert admin_client.delete(f"/results/{created['id']}").status_code == 204

    target = f"result:{created['id']}"
    trail = [(e["action"], e["actor_name"]) for e in events(admin_client) if e["target"] == target]
    assert trail == [
        ("result.delete", "admin"),
        ("result.image_view", username),
        ("result.view", username),
        ("result.classify", username),
    ]


def test_client_tokens_are_recorded(gateway, service_client, admin_client):
    recorded = events(admin_client, actor=service_client.api_client["name"], action="auth.client_token")
    assert recorded and recorded[0]["actor_kind"] == "client" and recorded[0]["outcome"] == "success"


def test_audit_filters_by_date_range_and_pages(admin_client):
    now = datetime.now(timezone.utc)
    assert events(admin_client, since=(now + timedelta(hours=1)).isoformat()) == []
    # up to a moment past: each read of the log is itself logged, which would shift the pages
    window = {"since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat()}
    recent = admin_client.get("/audit", params={**window, "limit": 2}).json()
    assert recent["total"] > 2 and len(recent["items"]) == 2 and recent["limit"] == 2
    second_page = admin_client.get("/audit", params={**window, "limit": 2, "offset": 2}).json()["items"]
    assert {e["id"] for e in second_page}.isdisjoint({e["id"] for e in recent["items"]})
    assert events(admin_client, until=(now - timedelta(days=365)).isoformat()) == []


def test_refused_requests_are_recorded_as_failures(gateway, admin_client, service_client, sample_xrays):
    name = service_client.api_client["name"]
    service_client.post("/classify", files={"file": ("x.gif", b"GIF89a" + b"\x00" * 64)})
    foreign = admin_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()
    service_client.get(f"/results/{foreign['id']}")

    rejected = events(admin_client, actor=name, action="result.classify")[0]
    assert (rejected["outcome"], rejected["detail"]) == ("failure", "unsupported_media_type")
    probe = events(admin_client, actor=name, action="result.view")[0]
    assert (probe["outcome"], probe["detail"], probe["target"]) == (
        "failure",
        "result_not_found",
        f"result:{foreign['id']}",
    )
