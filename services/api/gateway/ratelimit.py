"""Limits shared by every gateway replica through Redis: requests per caller per minute, and sign-in attempts.

Without REDIS_URL (the embedded run) requests are counted per process and sign-in attempts in the
database. With it, both are counted in Redis, atomically (a MULTI/EXEC pipeline and a Lua script),
so three replicas allow what one would, not three times as much.

When Redis cannot be reached (docs/operations.md, "Scaling the gateway"):
- the request limit falls back to each process's own count: callers are signed in and audited,
  and refusing every clinician's request because a counter store is away would stop clinical work;
  the limit still applies, per replica;
- the sign-in throttle falls back to the database, which every replica shares too: the protection
  against password guessing stays exact and shared, and people can still sign in.
Either fallback is logged (when Redis goes away and when it is back) and counted in
`gateway_shared_limit_fallbacks_total{limit}`, which the alert CxrSharedLimitsDegraded watches.
After a failure Redis is not asked again for a few seconds, so an outage does not add its timeout
to every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

import redis
from sqlalchemy.orm import Session

from gateway import crud
from gateway.models import utcnow
from gateway.observability import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
RETRY_REDIS_AFTER_SECONDS = 5.0
T = TypeVar("T")


class RateLimiter(Protocol):
    def seconds_to_wait(self, key: str) -> int:
        """Counts one request for `key`; 0 if it is allowed, else the seconds until the window ends."""
        ...


class LoginThrottle(Protocol):
    def attempt(self, session: Session, key: str) -> int:
        """Counts one sign-in attempt for `key` before its credentials are checked; 0 if they may be
        checked, else the seconds until the lock ends. Counting first means parallel attempts cannot
        all pass a check made before any of them failed."""
        ...

    def succeeded(self, session: Session, key: str) -> None:
        """The credentials were right: the attempts of `key` start again from none."""
        ...


def _window() -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    now = time.time()
    return int(now // WINDOW_SECONDS), WINDOW_SECONDS - int(now % WINDOW_SECONDS)


class SharedStore:
    """The Redis client of one process, which remembers a failure for a few seconds."""

    def __init__(self, url: str, password: str | None, metrics: Metrics):
        self.redis = redis.Redis.from_url(url, password=password, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.metrics = metrics
        self._lock = threading.Lock()
        self._retry_at = 0.0  # monotonic time before which Redis is not asked (0: it is up)

    def run(self, limit: str, call: Callable[[redis.Redis], T]) -> T | None:
        """What `call` returns, or None when Redis cannot answer now (counted in the fallback metric)."""
        if self._retry_at and time.monotonic() < self._retry_at:
            self.metrics.shared_limit_fallbacks.labels(limit).inc()
            return None
        try:
            answer = call(self.redis)
        except redis.RedisError as exc:
            with self._lock:
                if not self._retry_at:
                    log.warning(
                        "Redis unavailable, limits fall back (requests per process, sign-ins in the database): %s", exc
                    )
                self._retry_at = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
            self.metrics.shared_limit_fallbacks.labels(limit).inc()
            return None
        if self._retry_at:
            with self._lock:
                was_down, self._retry_at = bool(self._retry_at), 0.0
            if was_down:
                log.warning("Redis reachable again: limits are shared by every replica again")
        return answer


# requests per minute


class NoRateLimit:
    def seconds_to_wait(self, key: str) -> int:
        return 0


class MemoryRateLimiter:
    """One process's counts; with several replicas each allows the full limit."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.counts: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def seconds_to_wait(self, key: str) -> int:
        window, left = _window()
        with self.lock:
            if len(self.counts) > 100_000:  # callers of past windows
                self.counts = {k: v for k, v in self.counts.items() if v[0] == window}
            counted_window, count = self.counts.get(key, (window, 0))
            count = count + 1 if counted_window == window else 1
            self.counts[key] = (window, count)
        return left if count > self.per_minute else 0


class RedisRateLimiter:
    """Counts shared by every replica; this process's own counts while Redis is away."""

    def __init__(self, store: SharedStore, per_minute: int):
        self.store = store
        self.per_minute = per_minute
        self.fallback = MemoryRateLimiter(per_minute)

    def seconds_to_wait(self, key: str) -> int:
        window, left = _window()
        counter = f"cxr:ratelimit:{key}:{window}"

        def count(client: redis.Redis) -> int:
            pipeline = client.pipeline()  # MULTI/EXEC: the count and its expiry together
            pipeline.incr(counter)
            pipeline.expire(counter, WINDOW_SECONDS * 2)
            counted, _ = pipeline.execute()
            return int(counted)

        counted = self.store.run("requests", count)
        if counted is None:
            return self.fallback.seconds_to_wait(key)
        return left if counted > self.per_minute else 0


# sign-in attempts

# KEYS[1]: the attempts of one account name from one address. ARGV: the failures allowed, the lock in
# seconds. The window starts with the first attempt and starts again with the last allowed one, so
# the lock lasts ARGV[2] seconds after it; attempts while locked are counted but do not prolong it.
_COUNT_ATTEMPT = """
local count = redis.call('INCR', KEYS[1])
local allowed = tonumber(ARGV[1])
if count == 1 or count == allowed then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if count <= allowed then
  return 0
end
local left = redis.call('TTL', KEYS[1])
if left < 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  left = tonumber(ARGV[2])
end
return left
"""


class DatabaseLoginThrottle:
    """Attempts counted in the login_throttles table, in the request's transaction (one atomic upsert)."""

    def __init__(self, max_failures: int, lockout_seconds: int):
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds

    def attempt(self, session: Session, key: str) -> int:
        count, window_ends = crud.count_login_attempt(session, key, self.max_failures, self.lockout_seconds)
        if count <= self.max_failures:
            return 0
        return max(1, int((window_ends - utcnow()).total_seconds() + 0.999))

    def succeeded(self, session: Session, key: str) -> None:
        crud.clear_login_throttle(session, key)


class RedisLoginThrottle:
    """Attempts counted in Redis; in the database (`DatabaseLoginThrottle`) while Redis is away."""

    def __init__(self, store: SharedStore, max_failures: int, lockout_seconds: int):
        self.store = store
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self.script = store.redis.register_script(_COUNT_ATTEMPT)
        self.fallback = DatabaseLoginThrottle(max_failures, lockout_seconds)

    def attempt(self, session: Session, key: str) -> int:
        redis_key = f"cxr:login:{key}"
        wait = self.store.run(
            "logins",
            lambda client: self.script(keys=[redis_key], args=[self.max_failures, self.lockout_seconds], client=client),
        )
        if wait is None:
            return self.fallback.attempt(session, key)
        return int(cast(int, wait))

    def succeeded(self, session: Session, key: str) -> None:
        self.store.run("logins", lambda client: client.delete(f"cxr:login:{key}"))
        self.fallback.succeeded(session, key)  # attempts counted there while Redis was away


def make_limits(settings: Settings, metrics: Metrics) -> tuple[RateLimiter, LoginThrottle]:
    """The request limiter and the sign-in throttle: shared through Redis when REDIS_URL is set."""
    store = SharedStore(settings.redis_url, settings.redis_password, metrics) if settings.redis_url else None
    throttle: LoginThrottle = (
        RedisLoginThrottle(store, settings.login_max_failures, settings.login_lockout_seconds)
        if store
        else DatabaseLoginThrottle(settings.login_max_failures, settings.login_lockout_seconds)
    )
    if settings.rate_limit_per_minute <= 0:
        return NoRateLimit(), throttle
    if store:
        return RedisRateLimiter(store, settings.rate_limit_per_minute), throttle
    return MemoryRateLimiter(settings.rate_limit_per_minute), throttle
