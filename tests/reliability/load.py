"""Load generator: POST /classify with the sample X-rays from concurrent callers (asyncio + httpx).

It signs in as a service client through the real token endpoint. Every `idempotent_every`-th
request carries an Idempotency-Key and is sent twice (same key, same body), as a client that
lost the first answer would; reconciliation then checks that no retry stored a duplicate.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from support import client_credentials_token, login, new_api_client

SUCCESS = (200, 201)


@dataclass(frozen=True)
class Outcome:
    status: int  # 0: no HTTP answer at all (connection refused, reset, client timeout)
    started: float  # time.monotonic()
    finished: float
    result_id: str | None = None
    retry_after: str | None = None
    idempotency_key: str | None = None
    code: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


@dataclass
class LoadReport:
    """What the callers saw; grows while the load runs, so a fault driver can watch it."""

    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    def statuses(self) -> Counter:
        return Counter(outcome.status for outcome in self.outcomes)

    def result_ids(self) -> set[str]:
        return {outcome.result_id for outcome in self.outcomes if outcome.ok}

    def answers_by_key(self) -> dict[str, set[str]]:
        """The result ids each Idempotency-Key was answered with (2xx only)."""
        answers: dict[str, set[str]] = {}
        for outcome in self.outcomes:
            if outcome.idempotency_key:
                answers.setdefault(outcome.idempotency_key, set())
                if outcome.ok:
                    answers[outcome.idempotency_key].add(outcome.result_id)
        return answers

    def summary(self) -> dict:
        latencies_ms = [outcome.seconds * 1000 for outcome in self.outcomes]
        elapsed = max(self.finished - self.started, 1e-9)
        return {
            "requests": len(self.outcomes),
            "requests_per_second": round(len(self.outcomes) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies_ms), 1) if latencies_ms else 0.0,
            "p95_ms": round(percentile(latencies_ms, 0.95), 1),
            "p99_ms": round(percentile(latencies_ms, 0.99), 1),
            "max_ms": round(max(latencies_ms, default=0.0), 1),
            "errors": sum(not outcome.ok for outcome in self.outcomes),
            "statuses": {str(status): count for status, count in sorted(self.statuses().items())},
            "error_codes": dict(Counter(outcome.code for outcome in self.outcomes if not outcome.ok).most_common(5)),
            "idempotent_keys": len(self.answers_by_key()),
        }


def keepalive_limits(connections: int) -> httpx.Limits:
    # Idle connections are dropped well before uvicorn closes them (5 s): reusing one the server is
    # closing at that moment fails with "Server disconnected", a client-side race, not an answer.
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0)


def sample_images(data_dir: Path) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every sample X-ray."""
    paths = sorted((data_dir / "samples").glob("*/*.jp*g"))
    if not paths:
        raise FileNotFoundError(f"no sample X-rays under {data_dir / 'samples'}")
    return [(path.name, path.read_bytes()) for path in paths]


def service_client_token(gateway_url: str, admin_username: str, admin_password: str) -> str:
    """A new API client's access token, from the real token endpoint (client credentials)."""
    admin_token = login(gateway_url, admin_username, admin_password)
    with httpx.Client(base_url=gateway_url, headers={"Authorization": f"Bearer {admin_token}"}) as admin:
        client = new_api_client(admin)
    return client_credentials_token(gateway_url, client["client_id"], client["client_secret"])


async def _send(client: httpx.AsyncClient, image: tuple[str, bytes], key: str | None) -> Outcome:
    headers = {"Idempotency-Key": key} if key else {}
    started = time.monotonic()
    try:
        response = await client.post("/classify", files={"file": image}, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(0, started, time.monotonic(), idempotency_key=key, code=f"{type(exc).__name__}: {exc}")
    finished = time.monotonic()
    body = _json(response)
    return Outcome(
        response.status_code,
        started,
        finished,
        result_id=body.get("id") if response.status_code in SUCCESS else None,
        retry_after=response.headers.get("retry-after"),
        idempotency_key=key,
        code=body.get("code"),
    )


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def run_load(
    gateway_url: str,
    token: str,
    images: list[tuple[str, bytes]],
    requests: int | None = None,
    stop: asyncio.Event | None = None,
    concurrency: int = 32,
    idempotent_every: int = 10,
    report: LoadReport | None = None,
    timeout: float = 60.0,
) -> LoadReport:
    """Send `requests` uploads (an idempotent pair counts as two), or until `stop` is set."""
    report = report or LoadReport()
    numbers = itertools.count()
    run = uuid.uuid4().hex[:8]
    limits = keepalive_limits(concurrency)
    headers = {"Authorization": f"Bearer {token}"}

    def more() -> bool:
        return not (stop and stop.is_set()) and (requests is None or len(report.outcomes) < requests)

    async def caller(client: httpx.AsyncClient) -> None:
        while more():
            number = next(numbers)
            image = images[number % len(images)]
            key = f"load-{run}-{number}" if number % idempotent_every == 0 else None
            report.outcomes.append(await _send(client, image, key))
            if key and more():
                report.outcomes.append(await _send(client, image, key))  # the retry: same key, same body

    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=timeout, limits=limits) as client:
        report.started = time.monotonic()
        await asyncio.gather(*(caller(client) for _ in range(concurrency)))
        report.finished = time.monotonic()
    return report
