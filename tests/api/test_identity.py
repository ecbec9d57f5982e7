"""Roles, API clients, refresh tokens, logout, disabling and throttling, through the real gateway."""

import base64
import statistics
import time
import uuid

import httpx
import pytest
from support import bearer_client, client_credentials_grant, client_credentials_token, login, new_api_client, new_user


def password_login(gateway, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password})


def me(gateway, token: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/me", headers={"Authorization": f"Bearer {token}"})


def refresh(gateway, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/auth/refresh", data={"refresh_token": refresh_token})


@pytest.fixture
def clinician(admin_client) -> tuple[str, str]:
    return new_user(admin_client, "clinician")


def test_password_login_returns_a_refresh_token_that_rotates(gateway, clinician):
    first = password_login(gateway, *clinician).json()
    assert first["refresh_token"] and first["refresh_expires_in"] > first["expires_in"]

    second = refresh(gateway, first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert me(gateway, rotated["access_token"]).json()["username"] == clinician[0]


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(gateway, clinician):
    first = password_login(gateway, *clinician).json()
    second = refresh(gateway, first["refresh_token"]).json()

    replay = refresh(gateway, first["refresh_token"])
    assert replay.status_code == 401 and replay.json()["code"] == "refresh_token_reused"
    # the token the legitimate holder got is revoked with its family
    assert refresh(gateway, second["refresh_token"]).status_code == 401
    assert refresh(gateway, "not-a-refresh-token").json()["code"] == "invalid_refresh_token"


def test_logout_revokes_the_access_token_and_the_refresh_token(gateway, clinician):
    tokens = password_login(gateway, *clinician).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert me(gateway, tokens["access_token"]).status_code == 200

    response = httpx.post(
        f"{gateway.url}/auth/logout", data={"refresh_token": tokens["refresh_token"]}, headers=headers
    )

    assert response.status_code == 204
    assert me(gateway, tokens["access_token"]).status_code == 401
    assert refresh(gateway, tokens["refresh_token"]).status_code == 401
    assert password_login(gateway, *clinician).status_code == 200  # signing in again works


def test_client_credentials_in_the_form_or_http_basic(gateway, admin_client):
    api_client = new_api_client(admin_client)
    assert api_client["role"] == "service" and len(api_client["client_secret"]) >= 32
    form_token = client_credentials_token(gateway.url, api_client["client_id"], api_client["client_secret"])
    basic = base64.b64encode(f"{api_client['client_id']}:{api_client['client_secret']}".encode()).decode()
    response = httpx.post(
        f"{gateway.url}/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()  # client credentials get no refresh token

    for token in (form_token, response.json()["access_token"]):
        caller = me(gateway, token).json()
        assert (caller["kind"], caller["role"], caller["username"]) == ("client", "service", api_client["name"])

    wrong = httpx.post(
        f"{gateway.url}/auth/token",
        data={"grant_type": "client_credentials", "client_id": api_client["client_id"], "client_secret": "wrong"},
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_client"
    listed = admin_client.get("/clients").json()
    assert api_client["client_id"] in {c["client_id"] for c in listed}
    assert all("client_secret" not in c and "hashed_secret" not in c for c in listed)


def test_client_secrets_are_stored_as_argon2_hashes(admin_client, database):
    api_client = new_api_client(admin_client)
    stored = database.execute("SELECT hashed_secret FROM api_clients WHERE client_id = %s", (api_client["client_id"],))
    hashed = stored.fetchone()[0]
    assert hashed.startswith("$argon2id$") and api_client["client_secret"] not in hashed


def test_rotating_a_client_secret_retires_the_old_one(gateway, admin_client):
    api_client = new_api_client(admin_client)
    rotated = admin_client.post(f"/clients/{api_client['id']}/secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    assert new_secret != api_client["client_secret"]
    old = client_credentials_grant(gateway.url, api_client["client_id"], api_client["client_secret"])
    assert old.status_code == 401
    assert client_credentials_token(gateway.url, api_client["client_id"], new_secret)


def test_disabling_a_client_takes_effect_at_once(gateway, admin_client):
    api_client = new_api_client(admin_client)
    token = client_credentials_token(gateway.url, api_client["client_id"], api_client["client_secret"])
    assert me(gateway, token).status_code == 200

    disabled = admin_client.post(f"/clients/{api_client['id']}/disable")

    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    assert me(gateway, token).status_code == 401
    again = client_credentials_grant(gateway.url, api_client["client_id"], api_client["client_secret"])
    assert again.status_code == 401


def test_disabling_a_user_takes_effect_at_once(gateway, admin_client, clinician):
    tokens = password_login(gateway, *clinician).json()
    user_id = me(gateway, tokens["access_token"]).json()["id"]

    assert admin_client.post(f"/users/{user_id}/disable").json()["is_active"] is False

    assert me(gateway, tokens["access_token"]).status_code == 401
    assert refresh(gateway, tokens["refresh_token"]).status_code == 401
    assert password_login(gateway, *clinician).status_code == 401
    assert admin_client.post(f"/users/{uuid.uuid4()}/disable").status_code == 404


def test_repeated_failed_logins_are_throttled_with_retry_after(gateway, admin_client, clinician):
    username, password = clinician
    for _ in range(5):
        assert password_login(gateway, username, "wrong-password").status_code == 401
    locked = password_login(gateway, username, password)  # even the right password waits
    assert locked.status_code == 429 and locked.json()["code"] == "too_many_failed_logins"
    assert int(locked.headers["retry-after"]) > 0
    assert locked.headers["content-type"] == "application/problem+json"
    audited = admin_client.get("/audit", params={"actor": username, "action": "auth.login"}).json()["items"]
    assert [event["outcome"] for event in audited] == ["denied"] + ["failure"] * 5


def test_a_successful_login_resets_the_failure_count(gateway, clinician):
    username, password = clinician
    for _ in range(3):
        password_login(gateway, username, "wrong-password")
    assert password_login(gateway, username, password).status_code == 200
    for _ in range(4):
        password_login(gateway, username, "wrong-password")
    assert password_login(gateway, username, password).status_code == 200


def test_login_timing_does_not_reveal_whether_a_user_exists(gateway, clinician):
    def median_seconds(username: str) -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            assert password_login(gateway, username, "wrong-password").status_code == 401
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)

    known, unknown = median_seconds(clinician[0]), median_seconds(f"nobody-{uuid.uuid4().hex[:8]}")
    assert unknown > known / 3  # an unknown user also pays for one Argon2 verification


@pytest.mark.parametrize("path", ["/users", "/clients", "/audit"])
def test_admin_endpoints_refuse_clinicians_and_clients(clinician_client, service_client, path):
    for client in (clinician_client, service_client):
        response = client.get(path)
        assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_me_works_for_users_and_clients(admin_client, clinician_client, service_client):
    assert admin_client.get("/me").json()["kind"] == "user"
    assert clinician_client.get("/me").json()["role"] == "clinician"
    assert service_client.get("/me").json()["kind"] == "client"


def test_token_request_needs_its_grant_fields(gateway):
    response = httpx.post(f"{gateway.url}/auth/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    unknown_grant = httpx.post(
        f"{gateway.url}/auth/token", data={"grant_type": "implicit", "username": "a", "password": "b"}
    )
    assert unknown_grant.status_code == 422


def test_problem_types_are_stable_uris(gateway):
    response = httpx.get(f"{gateway.url}/results")
    assert response.json()["type"] == "https://cxr.example/problems/not-authenticated"


def test_clinicians_can_list_results(gateway, clinician):
    with bearer_client(gateway.url, login(gateway.url, *clinician)) as client:
        assert client.get("/results").status_code == 200
