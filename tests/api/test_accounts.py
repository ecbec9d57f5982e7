"""Account care through the real gateway: changing one's password, an administrator's reset (which
forces a change at the next sign-in), disabling and enabling a user; each audited, each ending the
sessions from before."""

from __future__ import annotations

import uuid

import httpx
import pytest

from support import bearer_client, new_api_client, new_user


def tokens_of(gateway, username: str, password: str) -> dict:
    response = httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def events(admin_client, **filters) -> list[dict]:
    return admin_client.get("/audit", params=filters).json()["items"]


def refresh(gateway, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/auth/refresh", data={"refresh_token": refresh_token})


def test_a_user_changes_their_password_and_their_other_sessions_end(gateway, admin_client):
    username, password = new_user(admin_client)
    other_session = tokens_of(gateway, username, password)
    this_session = tokens_of(gateway, username, password)
    new_password = "new-" + uuid.uuid4().hex

    with bearer_client(gateway.url, this_session["access_token"]) as client:
        changed = client.post("/me/password", json={"current_password": password, "new_password": new_password})
    assert changed.status_code == 200, changed.text
    renewed = changed.json()

    with bearer_client(gateway.url, renewed["access_token"]) as client:  # this session goes on
        assert client.get("/me").json()["must_change_password"] is False
    for ended in (other_session, this_session):
        with bearer_client(gateway.url, ended["access_token"]) as client:
            assert client.get("/me").status_code == 401
        assert refresh(gateway, ended["refresh_token"]).status_code == 401
    assert refresh(gateway, renewed["refresh_token"]).status_code == 200
    assert httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password}).status_code == 401
    tokens_of(gateway, username, new_password)
    assert [e["outcome"] for e in events(admin_client, actor=username, action="user.password_change")] == ["success"]


@pytest.mark.parametrize(
    "change, status, code",
    [
        ({"current_password": "not-it-" + "x" * 10, "new_password": "n" * 16}, 403, "wrong_password"),
        ({"current_password": None, "new_password": "short"}, 422, "invalid_request"),
        ({"current_password": None, "new_password": None}, 422, "password_unchanged"),
    ],
)
def test_a_password_change_needs_the_current_password_and_a_new_one(gateway, admin_client, change, status, code):
    username, password = new_user(admin_client)
    body = {key: value or password for key, value in change.items()}
    with bearer_client(gateway.url, tokens_of(gateway, username, password)["access_token"]) as client:
        refused = client.post("/me/password", json=body)
        assert (refused.status_code, refused.json()["code"]) == (status, code)
        assert client.get("/me").status_code == 200, "a refused change ends no session"
    tokens_of(gateway, username, password)


def test_guessing_the_current_password_is_throttled_like_a_sign_in(gateway, admin_client):
    username, password = new_user(admin_client)
    with bearer_client(gateway.url, tokens_of(gateway, username, password)["access_token"]) as client:
        wrong = {"current_password": "guess-" + uuid.uuid4().hex, "new_password": "n" * 16}
        answers = [client.post("/me/password", json=wrong).status_code for _ in range(6)]
        assert answers == [403] * 5 + [429]
        right = client.post("/me/password", json={"current_password": password, "new_password": "n" * 16})
        assert right.status_code == 429 and right.json()["code"] == "too_many_failed_logins"


def test_api_clients_have_no_password_to_change(service_client):
    refused = service_client.post("/me/password", json={"current_password": "x", "new_password": "n" * 16})
    assert refused.status_code == 403 and refused.json()["code"] == "not_a_user"


def test_an_admin_reset_forces_a_new_password_at_the_next_sign_in(gateway, admin_client, database):
    username, password = new_user(admin_client)
    before = tokens_of(gateway, username, password)
    user_id = admin_client.get("/me", headers={"Authorization": f"Bearer {before['access_token']}"}).json()["id"]

    reset = admin_client.post(f"/users/{user_id}/password")
    assert reset.status_code == 200, reset.text
    temporary = reset.json()["temporary_password"]
    assert len(temporary) >= 12 and reset.json()["user"]["must_change_password"] is True
    stored = database.execute("SELECT hashed_password FROM users WHERE id = %s", (user_id,)).fetchone()[0]
    assert stored.startswith("$argon2") and temporary not in stored

    assert refresh(gateway, before["refresh_token"]).status_code == 401, "the sessions from before end"
    with bearer_client(gateway.url, before["access_token"]) as old:
        assert old.get("/me").status_code == 401
    assert httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password}).status_code == 401

    pending = tokens_of(gateway, username, temporary)
    with bearer_client(gateway.url, pending["access_token"]) as client:
        assert client.get("/me").json()["must_change_password"] is True
        for method, path in (("GET", "/results"), ("POST", "/classify"), ("GET", "/models")):
            refused = client.request(method, path)
            assert refused.status_code == 403 and refused.json()["code"] == "password_change_required", path
        assert refresh(gateway, pending["refresh_token"]).status_code == 200  # refresh still works
        chosen = "chosen-" + uuid.uuid4().hex
        changed = client.post("/me/password", json={"current_password": temporary, "new_password": chosen})
        assert changed.status_code == 200, changed.text
    with bearer_client(gateway.url, changed.json()["access_token"]) as client:
        assert client.get("/results").status_code == 200
        assert client.get("/me").json()["must_change_password"] is False

    trail = [(e["action"], e["outcome"], e["actor_name"]) for e in events(admin_client, actor=username)]
    assert ("auth.password_change_required", "denied", username) in trail
    assert ("user.password_change", "success", username) in trail
    resets = events(admin_client, action="user.password_reset")
    assert (resets[0]["target"], resets[0]["detail"]) == (f"user:{user_id}", "generated")


def test_an_admin_may_choose_the_temporary_password(gateway, admin_client):
    username, _ = new_user(admin_client)
    user_id = next(u["id"] for u in admin_client.get("/users").json() if u["username"] == username)
    chosen = "temporary-" + uuid.uuid4().hex
    reset = admin_client.post(f"/users/{user_id}/password", json={"password": chosen})
    assert reset.status_code == 200 and reset.json()["temporary_password"] is None
    tokens_of(gateway, username, chosen)
    me = admin_client.get("/me").json()
    refused = admin_client.post(f"/users/{me['id']}/password")
    assert refused.status_code == 409 and refused.json()["code"] == "cannot_reset_self"


def test_an_admin_enables_a_disabled_user_whose_old_sessions_stay_ended(gateway, admin_client):
    username, password = new_user(admin_client)
    before = tokens_of(gateway, username, password)
    user_id = next(u["id"] for u in admin_client.get("/users").json() if u["username"] == username)

    assert admin_client.post(f"/users/{user_id}/disable").json()["is_active"] is False
    assert httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password}).status_code == 401
    enabled = admin_client.post(f"/users/{user_id}/enable")
    assert enabled.status_code == 200 and enabled.json()["is_active"] is True

    assert refresh(gateway, before["refresh_token"]).status_code == 401
    with bearer_client(gateway.url, before["access_token"]) as old:
        assert old.get("/me").status_code == 401
    tokens_of(gateway, username, password)
    trail = [(e["action"], e["target"]) for e in events(admin_client, action="user.enable")]
    assert trail[0] == ("user.enable", f"user:{user_id}")
    assert admin_client.post(f"/users/{uuid.uuid4()}/enable").status_code == 404


@pytest.mark.parametrize("path", ["/users/{id}/password", "/users/{id}/enable"])
def test_only_admins_reset_and_enable(clinician_client, admin_client, path):
    username, _ = new_user(admin_client)
    user_id = next(u["id"] for u in admin_client.get("/users").json() if u["username"] == username)
    assert clinician_client.post(path.format(id=user_id)).status_code == 403


def test_clients_cannot_be_reset(admin_client):
    client = new_api_client(admin_client)
    assert admin_client.post(f"/users/{client['id']}/password").status_code == 404


def test_the_command_line_resets_and_enables_when_no_admin_can_sign_in(gateway, admin_client):
    from processes import run_gateway_command

    username, password = new_user(admin_client)
    user_id = next(u["id"] for u in admin_client.get("/users").json() if u["username"] == username)
    admin_client.post(f"/users/{user_id}/disable")

    enabled = run_gateway_command("accounts", gateway.env, "enable", username)
    reset = run_gateway_command("accounts", gateway.env, "reset-password", username)

    assert f"'{username}' is enabled" in enabled
    temporary = reset.split(f"Temporary password for '{username}': ", 1)[1].split()[0]
    assert httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password}).status_code == 401
    with bearer_client(gateway.url, tokens_of(gateway, username, temporary)["access_token"]) as client:
        assert client.get("/me").json()["must_change_password"] is True
    trail = [(e["action"], e["actor_name"]) for e in events(admin_client, actor="command line")]
    assert trail[:2] == [("user.password_reset", "command line"), ("user.enable", "command line")]
    with pytest.raises(RuntimeError, match="there is no user"):
        run_gateway_command("accounts", gateway.env, "enable", "nobody-" + uuid.uuid4().hex[:8])
