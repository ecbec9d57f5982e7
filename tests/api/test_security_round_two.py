"""Issue 17, items 4 and 9-14, each proven through the real gateway (real Postgres, S3 server, inference).

A gateway of the test's own is started where a setting must differ (a trusted proxy, short sessions,
small limits); requests come from loopback addresses other than 127.0.0.1 (127.0.0.9 stands for the
frontend's nginx), as the gateway would see a proxy and clients on other hosts.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from processes import free_port, gateway_process, run_gateway_command
from support import bearer_client, login, new_user

PROXY = "127.0.0.9"  # the frontend's nginx, trusted
STRANGER = "127.0.0.10"  # a caller reaching the gateway directly, not trusted


@pytest.fixture
def own_gateway(gateway, logs_dir):
    """Start a gateway with these settings on the session's database, object store and inference; its URL."""
    started = []

    def start(**overrides: str) -> str:
        log_path = logs_dir / f"gateway-security-{uuid.uuid4().hex[:8]}.log"
        service = gateway_process(free_port(), gateway.env | overrides, log_path).start()
        started.append(service)
        return service.health_url.removesuffix("/health/live")

    yield start
    for service in started:
        service.stop()


def from_address(url: str, address: str) -> httpx.Client:
    """A client whose connections come from this loopback address."""
    return httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def sign_in(client: httpx.Client, username: str, password: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/auth/token", data={"username": username, "password": password}, headers=headers)


def audited(database, query: str, *args) -> list[tuple]:
    rows = database.execute(query, args).fetchall()
    database.commit()
    return rows


# item 4: the client's address through trusted proxies; throttles per address and per account


def test_behind_the_proxy_a_guesser_locks_out_only_their_own_address_and_the_audit_has_the_real_one(
    own_gateway, admin_client, database
):
    url = own_gateway(TRUSTED_PROXIES=PROXY)
    victim, password = new_user(admin_client, "admin")
    attacker, owner = "198.51.100.7", "203.0.113.5"
    with from_address(url, PROXY) as proxy:
        answers = [sign_in(proxy, victim, "guess-" + str(n), attacker).status_code for n in range(6)]
        assert answers == [401] * 5 + [429]
        assert sign_in(proxy, victim, password, owner).status_code == 200  # the owner, from elsewhere, still can
    with from_address(url, STRANGER) as stranger:  # X-Forwarded-For from an untrusted peer is ignored
        assert sign_in(stranger, victim, "spoofed", forwarded_for="192.0.2.1").status_code == 401
    events = audited(
        database, "SELECT outcome, ip FROM audit_events WHERE actor_name = %s AND action = 'auth.login' ORDER BY seq",
        victim,
    )  # fmt: skip
    assert events == [("failure", attacker)] * 5 + [("denied", attacker), ("success", owner), ("failure", STRANGER)]


@pytest.mark.parametrize("store", ["database", "redis"])
def test_one_address_trying_many_names_is_locked_and_one_name_tried_from_many_addresses_backs_off(
    own_gateway, admin_client, store
):
    limits = {
        "LOGIN_MAX_FAILURES_PER_ADDRESS": "4",
        "LOGIN_ACCOUNT_FREE_FAILURES": "3",
        "LOGIN_BACKOFF_MAX_SECONDS": "4",
    }
    redis = {"REDIS_URL": "redis://127.0.0.1:6379/0"} if store == "redis" else {}
    url = own_gateway(TRUSTED_PROXIES=PROXY, **limits, **redis)
    sprayer = f"198.51.100.{uuid.uuid4().int % 200 + 20}"
    victim, password = new_user(admin_client)
    with from_address(url, PROXY) as proxy:
        sprayed = [sign_in(proxy, f"nobody-{uuid.uuid4().hex[:6]}", "x", sprayer).status_code for _ in range(5)]
        assert sprayed == [401] * 4 + [429]

        addresses = (f"203.0.113.{n}" for n in range(1, 250))
        # each guess past the third makes the next wait 1 s, then 2 s, 4 s (the cap); a guess costs an
        # Argon2 check, so on a busy machine one may come after its wait: guess until one is refused
        answers = []
        while len(answers) < 10 and (not answers or answers[-1].status_code != 429):
            answers.append(sign_in(proxy, victim, "guess", next(addresses)))
        assert [a.status_code for a in answers[:4]] == [401] * 4  # the free attempts, and the one that waits
        refused = answers[-1]
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 4
        assert sign_in(proxy, victim, password, next(addresses)).status_code == 429  # the owner waits too
        time.sleep(int(refused.headers["Retry-After"]) + 0.2)
        assert sign_in(proxy, victim, password, next(addresses)).status_code == 200  # and the count starts again
        assert sign_in(proxy, victim, "guess", next(addresses)).status_code == 401


# item 10: an absolute session lifetime and an idle timeout


def test_a_session_ends_when_idle_and_at_its_absolute_lifetime(own_gateway, admin_client):
    # 3 s idle, 9 s in all; access tokens of 0 minutes (and no leeway): a refresh token lasts 3 s unused
    url = own_gateway(SESSION_IDLE_MINUTES="0.05", SESSION_MAX_HOURS="0.0025", ACCESS_TOKEN_MINUTES="0")
    username, password = new_user(admin_client)
    with httpx.Client(base_url=url, timeout=30) as client:
        tokens = sign_in(client, username, password).json()
        assert tokens["idle_timeout"] == 3 and 8 <= tokens["session_expires_in"] <= 9
        assert tokens["refresh_expires_in"] <= 3
        time.sleep(3.5)  # idle
        idle = client.post("/auth/refresh", data={"refresh_token": tokens["refresh_token"]})
        assert idle.status_code == 401 and idle.json()["code"] == "invalid_refresh_token"

        refresh_token, started = sign_in(client, username, password).json()["refresh_token"], time.monotonic()
        while time.monotonic() - started < 8:  # used every 2 s: never idle
            time.sleep(2)
            answer = client.post("/auth/refresh", data={"refresh_token": refresh_token})
            assert answer.status_code == 200, answer.text
            refresh_token = answer.json()["refresh_token"]
            assert answer.json()["session_expires_in"] <= 9 - (time.monotonic() - started) + 1
        time.sleep(max(0.0, 9.5 - (time.monotonic() - started)))
        ended = client.post("/auth/refresh", data={"refresh_token": refresh_token})
        assert ended.status_code == 401 and ended.json()["code"] == "invalid_refresh_token"


# item 11: the audit trail is insert-only, admin reads are audited, repeated failures aggregated


def test_the_database_refuses_to_change_or_remove_audit_events(admin_client, database):
    admin_client.get("/me")
    latest = audited(database, "SELECT max(seq) FROM audit_events")[0][0]
    for statement in (
        "UPDATE audit_events SET detail = 'rewritten' WHERE seq = %s",
        "DELETE FROM audit_events WHERE seq = %s",
    ):
        with pytest.raises(Exception, match="audit events are insert-only"):
            database.execute(statement, (latest,))
        database.rollback()
    with pytest.raises(Exception, match="audit events are insert-only"):
        database.execute("TRUNCATE audit_events")
    database.rollback()


def test_admin_reads_of_users_clients_and_the_audit_trail_are_audited(gateway, admin_client, database):
    admin_id = admin_client.get("/me").json()["id"]
    before = audited(database, "SELECT coalesce(max(seq), 0) FROM audit_events")[0][0]
    for path in ("/users", "/clients", "/audit", "/organisations"):
        assert admin_client.get(path).status_code == 200
    actions = audited(
        database, "SELECT action FROM audit_events WHERE seq > %s AND actor_id = %s ORDER BY seq", before, admin_id
    )
    assert {"user.list", "client.list", "audit.list", "organisation.list"} <= {action for (action,) in actions}


def test_a_flood_of_bad_tokens_and_passwords_writes_a_handful_of_rows(own_gateway, database):
    url = own_gateway(TRUSTED_PROXIES=PROXY, AUDIT_FAILURES_IN_FULL_PER_MINUTE="20")  # the default
    flooder = f"192.0.2.{uuid.uuid4().int % 200 + 20}"
    with from_address(url, PROXY) as proxy:
        for _ in range(250):  # past 100 in one minute, however the minutes fall
            response = proxy.get(
                "/results", headers={"Authorization": "Bearer not-a-token", "X-Forwarded-For": flooder}
            )
            assert response.status_code == 401
        answers = [sign_in(proxy, "nobody-at-all", "x", flooder).status_code for _ in range(210)]
        assert answers == [401] * 5 + [429] * 205
    rows = audited(database, "SELECT action, detail FROM audit_events WHERE ip = %s ORDER BY seq", flooder)
    tokens = [detail for action, detail in rows if action == "auth.token"]
    # each minute the first 20, then the 100th (the run may span two minutes)
    assert 21 <= len(tokens) <= 2 * 21 and any("repeated: 100 of these" in detail for detail in tokens)
    logins = [detail for action, detail in rows if action == "auth.login"]
    assert len(logins) <= 5 + 2 * 21 and any("repeated: 100 of these" in detail for detail in logins)


# item 9: organisations scope who sees what; accession numbers kept keyed


def classify(client: httpx.Client, sample_xrays, **fields: str) -> dict:
    image = sample_xrays["normal"][0].read_bytes()
    response = client.post("/classify", files={"file": ("x.jpg", image)}, data=fields)
    assert response.status_code == 201, response.text
    return response.json()


def test_results_are_seen_only_in_their_organisation(gateway, admin_client, clinician_client, sample_xrays):
    created = admin_client.post("/organisations", json={"name": f"hospital-{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201, created.text
    other = created.json()["id"]
    username = f"clinician-{uuid.uuid4().hex[:8]}"
    password = "pw-" + uuid.uuid4().hex
    user = admin_client.post("/users", json={"username": username, "password": password, "organisation_id": other})
    assert user.status_code == 201 and user.json()["organisation_id"] == other
    client = admin_client.post("/clients", json={"name": f"ris-{uuid.uuid4().hex[:6]}", "organisation_id": other})
    assert client.status_code == 201 and client.json()["organisation_id"] == other

    with bearer_client(gateway.url, login(gateway.url, username, password)) as theirs:
        result = classify(theirs, sample_xrays)
        assert theirs.get(f"/results/{result['id']}").status_code == 200
        assert result["id"] in {item["id"] for item in theirs.get("/results").json()["items"]}
        ours = classify(clinician_client, sample_xrays)
        assert theirs.get(f"/results/{ours['id']}").status_code == 404
    for outsider in (clinician_client, admin_client):
        assert outsider.get(f"/results/{result['id']}").status_code == 404
        assert outsider.get(f"/results/{result['id']}/image").status_code == 404
        listed = {item["id"] for item in outsider.get("/results", params={"limit": 200}).json()["items"]}
        assert result["id"] not in listed and ours["id"] in listed
    unknown = admin_client.post("/users", json={"username": f"u-{uuid.uuid4().hex[:8]}", "password": password,
                                                "organisation_id": str(uuid.uuid4())})  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["code"] == "organisation_not_found"


def test_accession_numbers_are_stored_keyed_never_shown_and_found_by_value(
    gateway, clinician_client, sample_xrays, database
):
    from gateway.pseudonyms import accession_digest

    accession = f"ACC{uuid.uuid4().hex[:10]}"
    result = classify(clinician_client, sample_xrays, accession_number=accession)
    assert result["accession_number"] is None
    (stored,) = audited(database, "SELECT accession_number FROM results WHERE id = %s", result["id"])[0]
    assert stored == accession_digest(accession, gateway.env["DEIDENTIFICATION_UID_SECRET"]) and accession not in stored
    shown = clinician_client.get(f"/results/{result['id']}").json()
    assert shown["accession_number"] is None and accession not in str(shown)
    found = clinician_client.get("/results", params={"accession_number": accession}).json()
    assert [item["id"] for item in found["items"]] == [result["id"]]


# item 14: the first administrator's password never in the output; objects encrypted at rest


def test_prestart_never_prints_the_first_administrators_password(gateway, postgres_url):
    from support import POSTGRES_ADMIN_DSN, throwaway_database

    with throwaway_database(POSTGRES_ADMIN_DSN, "cxr_prestart") as url:
        env = gateway.env | {"DATABASE_URL": url}
        without = {name: value for name, value in env.items() if name != "FIRST_ADMIN_PASSWORD"}
        with pytest.raises(RuntimeError, match="FIRST_ADMIN_PASSWORD must be set") as refused:
            run_gateway_command("prestart", without | {"FIRST_ADMIN_PASSWORD": ""})
        assert "password:" not in str(refused.value)
        printed = run_gateway_command("prestart", env)
        assert env["FIRST_ADMIN_PASSWORD"] not in printed


def test_images_are_stored_with_server_side_encryption(own_gateway, gateway, s3_server, sample_xrays, database):
    url = own_gateway(S3_SERVER_SIDE_ENCRYPTION="AES256")
    with bearer_client(url, login(url, gateway.admin_username, gateway.admin_password)) as client:
        result = classify(client, sample_xrays)
    (key,) = audited(
        database, "SELECT i.object_key FROM results r JOIN images i ON i.id = r.image_id WHERE r.id = %s", result["id"]
    )[0]
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
