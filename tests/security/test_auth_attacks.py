"""Attacks on authentication and authorization, each against the real gateway: every attempt is
refused with the right status and leaves its event in the audit trail (found by its request id).

Forged tokens carry otherwise valid claims for a real clinician, so only the attacked property
makes them invalid.
"""

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from jose import jwt

from support import bearer_client, client_credentials_token, login, new_api_client, new_user, token_claims


@dataclass(frozen=True)
class Refusal:
    status: int
    action: str  # the audit event it must leave
    outcome: str


TOKEN_REFUSED = Refusal(401, "auth.token", "failure")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict, claims: dict, sign) -> str:
    """A JWT put together by hand, for headers python-jose will not write; `sign` gets the signing input."""
    payload = {name: int(v.timestamp()) if isinstance(v, datetime) else v for name, v in claims.items()}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{sign(signing_input.encode())}"


class Attacker:
    """Makes each attack's request; `victim` is a real clinician (id, token, refresh token)."""

    def __init__(self, gateway, admin_client):
        self.gateway, self.admin = gateway, admin_client
        self.secret = gateway.env["JWT_SECRET"]
        username, password = new_user(admin_client, "clinician")
        tokens = httpx.post(f"{gateway.url}/auth/token", data={"username": username, "password": password}).json()
        self.victim_token, self.victim_refresh = tokens["access_token"], tokens["refresh_token"]
        self.victim_id = self.get("/me", self.victim_token).json()["id"]
        self.credentials = (username, password)

    def get(self, path: str, token: str, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": f"attack-{uuid.uuid4().hex}"}
        return httpx.get(f"{self.gateway.url}{path}", headers=headers, params=params, timeout=30)

    def signed(self, algorithm: str = "HS256", secret: str | None = None, **overrides) -> str:
        claims, headers = token_claims(self.victim_id, **overrides), {"typ": "at+jwt"}
        return jwt.encode(claims, secret or self.secret, algorithm=algorithm, headers=headers)

    def with_token(self, token: str) -> tuple[httpx.Response, Refusal]:
        return self.get("/results", token), TOKEN_REFUSED


def alg_none(attacker: Attacker):
    token = hand_made_token({"alg": "none", "typ": "JWT"}, token_claims(attacker.victim_id, role="admin"), lambda _: "")
    return attacker.with_token(token)


def algorithm_confusion_rs256_header(attacker: Attacker):
    # RS256 named in the header, HMAC-signed with the shared secret: the classic key-confusion trick
    def sign(data: bytes) -> str:
        return b64(hmac.new(attacker.secret.encode(), data, hashlib.sha256).digest())

    return attacker.with_token(hand_made_token({"alg": "RS256", "typ": "JWT"}, token_claims(attacker.victim_id), sign))


def algorithm_confusion_hs512(attacker: Attacker):
    return attacker.with_token(attacker.signed("HS512"))


def signed_with_another_key(attacker: Attacker):
    return attacker.with_token(attacker.signed(secret="another-key-" + uuid.uuid4().hex))


def expired(attacker: Attacker):
    past = datetime.now(timezone.utc) - timedelta(minutes=10)
    return attacker.with_token(attacker.signed(iat=past, nbf=past, exp=past + timedelta(minutes=5)))


def not_yet_valid(attacker: Attacker):
    return attacker.with_token(attacker.signed(nbf=datetime.now(timezone.utc) + timedelta(minutes=10)))


def wrong_audience(attacker: Attacker):
    return attacker.with_token(attacker.signed(aud="another-service"))


def wrong_issuer(attacker: Attacker):
    return attacker.with_token(attacker.signed(iss="someone-else"))


def tampered_payload(attacker: Attacker):
    header, payload, signature = attacker.victim_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = b64(json.dumps(claims | {"role": "admin"}).encode())
    return attacker.with_token(f"{header}.{forged}.{signature}")


def missing_subject(attacker: Attacker):
    return attacker.with_token(attacker.signed(sub=None))


def refresh_token_as_access_token(attacker: Attacker):
    return attacker.with_token(attacker.victim_refresh)


def revoked_token(attacker: Attacker):
    token = login(attacker.gateway.url, *attacker.credentials)
    logout = httpx.post(f"{attacker.gateway.url}/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.status_code == 204
    return attacker.with_token(token)


def disabled_users_token(attacker: Attacker):
    assert attacker.admin.post(f"/users/{attacker.victim_id}/disable").status_code == 200
    return attacker.with_token(attacker.victim_token)


def clinician_on_admin_route(attacker: Attacker):
    return attacker.get("/users", attacker.victim_token), Refusal(403, "auth.role", "denied")


def client_reads_another_clients_result(attacker: Attacker, sample_xrays):
    owner, intruder = (client_token(attacker) for _ in range(2))
    with bearer_client(attacker.gateway.url, owner) as client:
        theirs = client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()
    return attacker.get(f"/results/{theirs['id']}", intruder), Refusal(404, "result.view", "failure")


def client_token(attacker: Attacker) -> str:
    api_client = new_api_client(attacker.admin)
    return client_credentials_token(attacker.gateway.url, api_client["client_id"], api_client["client_secret"])


ATTACKS = [
    alg_none,
    algorithm_confusion_rs256_header,
    algorithm_confusion_hs512,
    signed_with_another_key,
    expired,
    not_yet_valid,
    wrong_audience,
    wrong_issuer,
    tampered_payload,
    missing_subject,
    refresh_token_as_access_token,
    revoked_token,
    disabled_users_token,
    clinician_on_admin_route,
]

INJECTIONS = {
    "sql-quote": ("label", "' OR '1'='1"),
    "sql-stacked": ("submitted_by", "x'; DROP TABLE results; --"),
    "sql-union": ("model", "x' UNION SELECT id, hashed_password FROM users --"),
    "json-operator": ("label", '{"$ne": null}'),
    "json-breakout": ("submitted_by", '", "role": "admin'),
}


def audit_event(admin_client, action: str, request_id: str) -> dict | None:
    events = admin_client.get("/audit", params={"action": action, "limit": 500}).json()["items"]
    return next((event for event in events if event["request_id"] == request_id), None)


def assert_refused_and_audited(admin_client, response: httpx.Response, refusal: Refusal) -> None:
    assert response.status_code == refusal.status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    event = audit_event(admin_client, refusal.action, response.headers["x-request-id"])
    assert event is not None, f"no {refusal.action} event for request {response.headers['x-request-id']}"
    assert event["outcome"] == refusal.outcome


@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.__name__ for attack in ATTACKS])
def test_attack_is_refused_and_audited(gateway, admin_client, attack):
    response, refusal = attack(Attacker(gateway, admin_client))
    assert_refused_and_audited(admin_client, response, refusal)


def test_service_client_cannot_read_another_clients_result(gateway, admin_client, sample_xrays):
    response, refusal = client_reads_another_clients_result(Attacker(gateway, admin_client), sample_xrays)
    assert_refused_and_audited(admin_client, response, refusal)
    assert response.json()["code"] == "result_not_found"


@pytest.mark.parametrize("field,value", INJECTIONS.values(), ids=list(INJECTIONS))
def test_injection_in_filters_matches_nothing_and_is_audited(gateway, admin_client, sample_xrays, field, value):
    """A filter value is data, never SQL or a query operator: it matches nothing, leaks nothing, breaks nothing."""
    attacker = Attacker(gateway, admin_client)
    owner, intruder = client_token(attacker), client_token(attacker)
    with bearer_client(gateway.url, owner) as client:
        assert client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).is_success

    response = attacker.get("/results", intruder, **{field: value})

    assert response.status_code == 200, response.text
    assert response.json()["items"] == [] and response.json()["total"] == 0
    event = audit_event(admin_client, "result.list", response.headers["x-request-id"])
    assert event is not None and json.loads(event["detail"]) == {field: value}
    assert admin_client.get("/results", params={"limit": 1}).json()["total"] > 0  # the results table is intact
