"""Limits shared by gateway replicas through the real local Redis, and what happens when Redis is down.

Each test starts its own gateway processes on the session's database and object store, with
REDIS_URL pointing at the local Redis (127.0.0.1:6379, started by scripts/test.sh) or at a Redis
server of its own that the test stops and starts again.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from processes import free_port, gateway_process
from support import bearer_client, login, new_user

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module", autouse=True)
def local_redis():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        pytest.fail(f"the local Redis at {REDIS_URL} is not running (scripts/test.sh starts it): {error}")


@pytest.fixture
def start_gateway(gateway, logs_dir):
    """Start a gateway with these settings on the session's database and store; returns its URL and log."""
    started = []

    def start(**overrides):
        log_path = logs_dir / f"gateway-limits-{uuid.uuid4().hex[:8]}.log"
        service = gateway_process(free_port(), gateway.env | overrides, log_path).start()
        started.append(service)
        return service.health_url.removesuffix("/health/live"), log_path

    yield start
    for service in started:
        service.stop()


class RedisServer:
    """A Redis server of the test's own on a free port, which the test can stop and start again."""

    def __init__(self, logs_dir, password: str):
        self.port, self.password = free_port(), password
        self.log_path = logs_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, password=self.password, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(logs_dir):
    server = RedisServer(logs_dir, password="pw-" + uuid.uuid4().hex).start()
    yield server
    server.stop()


def wait_for_a_fresh_window(margin: float = 5.0) -> None:
    """Request limits count per clock minute; start a short burst well inside one."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.1)


def statuses(client: httpx.Client, count: int) -> list[int]:
    return [client.get("/me").status_code for _ in range(count)]


def sign_in(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/auth/token", data={"username": username, "password": password}, timeout=30)


def fallbacks(url: str, limit: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf'gateway_shared_limit_fallbacks_total\{{limit="{limit}"\}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_two_replicas_share_one_request_limit(start_gateway, admin_client):
    first, _ = start_gateway(RATE_LIMIT_PER_MINUTE="4", REDIS_URL=REDIS_URL)
    second, _ = start_gateway(RATE_LIMIT_PER_MINUTE="4", REDIS_URL=REDIS_URL)
    username, password = new_user(admin_client)  # a caller no other test has counted against this minute
    token = login(first, username, password)
    wait_for_a_fresh_window()
    with bearer_client(first, token) as one, bearer_client(second, token) as other:
        assert statuses(one, 2) + statuses(other, 2) == [200] * 4  # one caller, two replicas
        limited = other.get("/me")
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
        assert one.get("/me").status_code == 429, "the limit is not multiplied by the replicas"


def test_two_replicas_share_one_sign_in_throttle(start_gateway, admin_client):
    username, password = new_user(admin_client)
    first, _ = start_gateway(REDIS_URL=REDIS_URL, LOGIN_MAX_FAILURES="4", LOGIN_LOCKOUT_SECONDS="120")
    second, _ = start_gateway(REDIS_URL=REDIS_URL, LOGIN_MAX_FAILURES="4", LOGIN_LOCKOUT_SECONDS="120")

    answers = [sign_in(url, username, "wrong").status_code for url in (first, second, first, second)]

    assert answers == [401] * 4
    for url in (first, second):  # the right password no longer helps, on either replica
        locked = sign_in(url, username, password)
        assert locked.status_code == 429 and locked.json()["code"] == "too_many_failed_logins"
        assert 100 < int(locked.headers["retry-after"]) <= 120


@pytest.mark.parametrize("counted_in", ["redis", "database"])
def test_parallel_sign_in_attempts_are_decided_after_counting(start_gateway, admin_client, counted_in):
    # attempts are counted before the password is checked: a burst of parallel guesses cannot all pass
    # a check made before any of them failed, whether Redis or the database counts them
    username, _ = new_user(admin_client)
    settings = {"LOGIN_MAX_FAILURES": "3", "LOGIN_LOCKOUT_SECONDS": "120"}
    url, _ = start_gateway(**settings, **({"REDIS_URL": REDIS_URL} if counted_in == "redis" else {}))

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: sign_in(url, username, "wrong").status_code, range(12)))

    assert sorted(answers) == [401] * 3 + [429] * 9


def test_with_redis_down_requests_are_limited_per_replica_and_sign_ins_in_the_database(
    start_gateway, own_redis, admin_client, gateway
):
    username, password = new_user(admin_client)
    url, log_path = start_gateway(
        REDIS_URL=own_redis.url,
        REDIS_PASSWORD=own_redis.password,
        RATE_LIMIT_PER_MINUTE="6",
        LOGIN_MAX_FAILURES="3",
        LOGIN_LOCKOUT_SECONDS="120",
    )
    token = login(url, username, password)
    counted = redis.Redis.from_url(own_redis.url, password=own_redis.password)
    assert counted.keys("cxr:ratelimit:*") == [], "nothing counted before the first request"
    with bearer_client(url, token) as client:
        assert client.get("/me").status_code == 200
        assert counted.keys("cxr:ratelimit:*"), "the request was counted in Redis (with its password)"

        own_redis.stop()
        wait_for_a_fresh_window(margin=10)
        started = time.monotonic()
        answers = statuses(client, 7)
        elapsed = time.monotonic() - started

    # fail open to this process's own count: clinical work goes on, still limited, without Redis' timeout
    assert answers == [200] * 6 + [429], answers
    assert elapsed < 3, "an unreachable Redis is not asked again for every request"
    assert fallbacks(url, "requests") >= 7
    assert "Redis unavailable, limits fall back" in log_path.read_text()

    # sign-in failures are counted in the database, which every replica shares: still exact
    assert [sign_in(url, username, "wrong").status_code for _ in range(3)] == [401] * 3
    locked = sign_in(url, username, password)
    assert locked.status_code == 429 and locked.json()["code"] == "too_many_failed_logins"
    assert fallbacks(url, "logins") >= 4

    own_redis.start()  # back on the same port: shared again after the pause
    time.sleep(5.5)
    other, _ = new_user(admin_client)
    assert sign_in(url, other, "wrong").status_code == 401
    assert counted.keys("cxr:login:*"), "sign-in attempts are counted in Redis again"
    assert "Redis reachable again" in log_path.read_text()
