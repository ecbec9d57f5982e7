"""Accepted tokens are trusted again for at most a second without the database (`gateway.auth_cache`).

A token revoked, or an account disabled, through one gateway is refused there at once, and by a second
gateway on the same database within the cache's second; the cache stays bounded.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
from support import bearer_client, login, new_user

from gateway.auth_cache import RecentAuthentications
from gateway.principals import Principal

CACHE_SECONDS = 1.0  # the setting's default and its maximum
REQUEST_MARGIN_SECONDS = 0.5  # one request's own time on a busy test machine


def _refused_after(client: httpx.Client, token: str, started: float) -> float:
    """Seconds from `started` until `client`'s gateway refuses the token (GET /me), polling; fails after 5 s."""
    while time.monotonic() - started < 5:
        if client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("the token was still accepted 5 s later")


def _signed_in_on_both(gateway, admin_client, gateway_with) -> tuple[str, httpx.Client, dict]:
    """A new clinician's token, a second gateway (a replica) that has just accepted it, and the user."""
    username, password = new_user(admin_client)
    token = login(gateway.url, username, password)
    replica = gateway_with()
    assert replica.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    user = next(item for item in admin_client.get("/users").json() if item["username"] == username)
    return token, replica, user


def test_an_account_disabled_on_one_gateway_is_refused_there_at_once_and_on_another_within_a_second(
    gateway, admin_client, gateway_with
):
    token, replica, user = _signed_in_on_both(gateway, admin_client, gateway_with)
    with bearer_client(gateway.url, token) as own:
        assert own.get("/me").status_code == 200  # accepted a moment ago on this gateway too

        assert admin_client.post(f"/users/{user['id']}/disable").status_code == 200
        disabled = time.monotonic()

        assert own.get("/me").status_code == 401
    assert _refused_after(replica, token, disabled) <= CACHE_SECONDS + REQUEST_MARGIN_SECONDS


def test_a_token_revoked_on_one_gateway_is_refused_there_at_once_and_on_another_within_a_second(
    gateway, admin_client, gateway_with
):
    token, replica, _ = _signed_in_on_both(gateway, admin_client, gateway_with)
    with bearer_client(gateway.url, token) as own:
        assert own.get("/me").status_code == 200
        assert own.post("/auth/logout").status_code == 204
        revoked = time.monotonic()

        assert own.get("/me").status_code == 401
    assert _refused_after(replica, token, revoked) <= CACHE_SECONDS + REQUEST_MARGIN_SECONDS


def _authentication(expires_in: float = 900) -> tuple[Principal, dict]:
    principal = Principal("user", uuid.uuid4(), "someone", "clinician", True, datetime.now(UTC))
    return principal, {"exp": time.time() + expires_in, "jti": uuid.uuid4().hex}


def test_an_entry_lasts_the_cache_seconds_and_never_past_the_token_expiry():
    recent = RecentAuthentications(seconds=0.2)
    authenticated = _authentication()
    recent.put("token", authenticated, recent.generation)
    recent.put("expiring", _authentication(expires_in=0.05), recent.generation)
    assert recent.get("token") == authenticated
    assert recent.get("expiring") is not None
    time.sleep(0.1)
    assert recent.get("expiring") is None  # its token expired
    assert recent.get("token") == authenticated
    time.sleep(0.15)
    assert recent.get("token") is None


def test_a_check_that_began_before_a_forget_is_not_kept():
    recent = RecentAuthentications(seconds=1)
    began = recent.generation
    recent.forget_all()  # a revocation committed while the check was reading the database
    recent.put("token", _authentication(), began)
    assert recent.get("token") is None


def test_the_cache_is_bounded_and_can_be_turned_off():
    recent = RecentAuthentications(seconds=1, max_entries=100)
    for number in range(1000):
        recent.put(f"token-{number}", _authentication(), recent.generation)
        assert len(recent._entries) <= 100
    assert recent.get("token-999") is not None

    off = RecentAuthentications(seconds=0)
    off.put("token", _authentication(), off.generation)
    assert off.get("token") is None
    assert off.get(None) is None
