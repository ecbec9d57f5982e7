"""Signing in and out, and what happens when the access token expires (refresh, or back to sign-in)."""

from __future__ import annotations

import time
import uuid

from e2e_steps import EXPIRED, expect, go_to, sign_in, sign_in_as_admin


def test_the_sign_in_page(page, screenshots):
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#login").get_by_label("Username")).to_be_focused()
    screenshots(page, "login")


def test_wrong_password_shows_an_error_and_stays_on_sign_in(page, gateway):
    sign_in(page, gateway.admin_username, "not-the-password")

    expect(page.get_by_role("alert")).to_have_text("The username or password is not correct.")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#login").get_by_label("Password")).to_be_focused()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_tokens_are_kept_in_memory_only(page, gateway):
    sign_in_as_admin(page, gateway)
    stored = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]


def expired_access_token(gateway, admin_client) -> str:
    """An access token for the admin signed as the gateway signs them, that expired a minute ago."""
    from jose import jwt

    me = admin_client.get("/me").json()
    now = int(time.time())
    claims = {"sub": me["id"], "role": "admin", "kind": "user", "iss": "cxr-gateway", "aud": "cxr-api",
              "iat": now - 120, "nbf": now - 120, "exp": now - 60, "jti": uuid.uuid4().hex}  # fmt: skip
    return jwt.encode(claims, gateway.env["JWT_SECRET"], algorithm="HS256")


def test_an_expired_access_token_is_renewed_with_the_refresh_token(page, gateway, admin_client):
    sign_in_as_admin(page, gateway)
    expired = expired_access_token(gateway, admin_client)
    # The next request carries an expired token, as it would after ACCESS_TOKEN_MINUTES.
    page.route(
        lambda url: "/api/results?" in url,
        lambda route: route.continue_(headers={**route.request.headers, "authorization": f"Bearer {expired}"}),
        times=1,
    )

    statuses = []
    page.on("response", lambda response: statuses.append(response.status) if "/api/results?" in response.url else None)
    with page.expect_response(lambda response: response.url.endswith("/api/auth/refresh")) as refresh:
        go_to(page, "History")

    assert refresh.value.status == 200
    expect(page.locator("#history [data-role=loading]")).to_be_hidden()
    assert statuses == [401, 200]  # rejected, then sent again with the new token
    expect(page.locator("#history").get_by_role("alert")).to_be_hidden()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def test_the_session_ends_with_a_message_when_the_refresh_token_has_expired(open_page, gateway, logs_dir):
    """A gateway whose access and refresh tokens both expire at once, and a frontend in front of it."""
    from processes import free_port, frontend_process, gateway_process

    env = gateway.env | {"ACCESS_TOKEN_MINUTES": "0", "REFRESH_TOKEN_DAYS": "0", "JWT_LEEWAY_SECONDS": "0"}
    port = free_port()
    short_lived = gateway_process(port, env, logs_dir / "gateway-short-tokens.log").start()
    frontend = frontend_process(free_port(), f"http://127.0.0.1:{port}", logs_dir / "frontend-short.log").start()
    try:
        page = open_page(frontend.health_url.removesuffix("/healthz"))
        sign_in(page, gateway.admin_username, gateway.admin_password)
        # Signed in, or already sent back if the token expired before GET /me.
        page.wait_for_function("() => !document.getElementById('nav').hidden || !document.querySelector('#login [data-role=notice]').hidden")
        page.wait_for_timeout(1100)  # the token is good in the second it was issued, not after
        page.goto("/#/history")

        expect(page.get_by_role("status").filter(has_text=EXPIRED)).to_be_visible()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    finally:
        frontend.stop()
        short_lived.stop()
