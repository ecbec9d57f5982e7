"""Login and token checks through the real gateway."""

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from jose import jwt

from support import login, new_user, token_claims


def make_token(gateway, **overrides) -> str:
    me = httpx.get(
        f"{gateway.url}/me",
        headers={"Authorization": f"Bearer {login(gateway.url, gateway.admin_username, gateway.admin_password)}"},
    ).json()
    claims = token_claims(me["id"], role="admin") | overrides
    algorithm = claims.pop("alg", "HS256")
    secret = claims.pop("secret", gateway.env["JWT_SECRET"])
    headers = {"typ": claims.pop("typ", "at+jwt")}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm=algorithm, headers=headers)


def test_login_returns_a_short_lived_bearer_token(gateway):
    response = httpx.post(
        f"{gateway.url}/auth/token", data={"username": gateway.admin_username, "password": gateway.admin_password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 3600
    claims = jwt.get_unverified_claims(body["access_token"])
    assert {"sub", "exp", "iat", "nbf", "iss", "aud", "jti"} <= set(claims)


def test_me_returns_the_signed_in_user(admin_client):
    me = admin_client.get("/me").json()
    assert me["username"] == "admin" and me["role"] == "admin" and "hashed_password" not in me


@pytest.mark.parametrize("username", ["admin", "nobody"])
def test_wrong_credentials_get_401_problem(gateway, username):
    response = httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": "wrong-password"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_credentials"


def test_missing_token_gets_401(gateway):
    response = httpx.get(f"{gateway.url}/results")
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": datetime.now(timezone.utc) - timedelta(seconds=31)},
        {"aud": "another-service"},
        {"aud": None},
        {"iss": "someone-else"},
        {"iss": None},
        {"kind": None},
        {"kind": "robot"},
        {"typ": "JWT"},
        {"typ": None},
        {"secret": "not-the-secret-" + uuid.uuid4().hex},
        {"alg": "HS512"},
        {"jti": None},
        {"nbf": datetime.now(timezone.utc) + timedelta(minutes=10)},
    ],
    ids=[
        "expired-beyond-the-leeway",
        "audience",
        "no-audience",
        "issuer",
        "no-issuer",
        "no-kind",
        "unknown-kind",
        "another-type",
        "no-type",
        "signature",
        "algorithm",
        "no-jti",
        "not-yet-valid",
    ],
)
def test_invalid_tokens_get_401(gateway, overrides):
    token = make_token(gateway, **overrides)
    response = httpx.get(f"{gateway.url}/results", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text


def test_unsigned_token_is_refused(gateway):
    valid = make_token(gateway)
    header, payload, _ = valid.split(".")
    unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + "."
    response = httpx.get(f"{gateway.url}/results", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401


def test_a_well_formed_token_is_accepted(gateway):
    response = httpx.get(f"{gateway.url}/me", headers={"Authorization": f"Bearer {make_token(gateway)}"})
    assert response.status_code == 200


def test_tokens_carry_their_type_and_a_clock_skew_of_30_s_is_tolerated(gateway):
    issued = login(gateway.url, gateway.admin_username, gateway.admin_password)
    assert jwt.get_unverified_header(issued)["typ"] == "at+jwt"
    assert jwt.get_unverified_claims(issued)["kind"] == "user"
    now = datetime.now(timezone.utc)
    skewed = [  # a replica whose clock is 20 s ahead issued it, or one 20 s behind checks it
        make_token(gateway, iat=now + timedelta(seconds=20), nbf=now + timedelta(seconds=20)),
        make_token(gateway, exp=now - timedelta(seconds=20)),
    ]
    for token in skewed:
        assert httpx.get(f"{gateway.url}/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_only_admins_create_users_and_new_users_can_sign_in(admin_client, gateway):
    username = f"clinician-{uuid.uuid4().hex[:8]}"
    password = "correct-horse-" + uuid.uuid4().hex[:8]
    created = admin_client.post("/users", json={"username": username, "password": password, "role": "clinician"})
    assert created.status_code == 201 and created.json()["role"] == "clinician"
    assert admin_client.post("/users", json={"username": username, "password": password}).status_code == 409
    token = login(gateway.url, username, password)
    as_clinician = httpx.post(
        f"{gateway.url}/users",
        json={"username": "sneaky-admin", "password": "x" * 16, "role": "admin"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert as_clinician.status_code == 403
    short = admin_client.post("/users", json={"username": "shorty", "password": "short"})
    assert short.status_code == 422 and short.json()["code"] == "invalid_request"


def test_a_password_hashed_with_older_argon2_settings_is_rehashed_at_sign_in(gateway, admin_client, database):
    from argon2 import PasswordHasher

    username, password = new_user(admin_client)
    older = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(password)  # argon2-cffi's default
    database.execute("UPDATE users SET hashed_password = %s WHERE username = %s", (older, username))
    database.commit()

    assert login(gateway.url, username, password)

    (stored,) = database.execute("SELECT hashed_password FROM users WHERE username = %s", (username,)).fetchone()
    database.commit()
    assert stored != older and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert login(gateway.url, username, password)  # the new hash checks the same password
