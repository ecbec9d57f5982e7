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
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

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


@dataclass(frozen=True)
class SignInKeys:
    """What one sign-in attempt is counted against (each a SHA-256 hex digest, see `identity`)."""

    pair: str  # the account name from this address: locked after LOGIN_MAX_FAILURES
    address: str  # this address, whatever the names: locked after LOGIN_MAX_FAILURES_PER_ADDRESS
    account: str  # the account name from every address: backoff after LOGIN_ACCOUNT_FREE_FAILURES


@dataclass(frozen=True)
class SignInLimits:
    max_failures: int
    lockout_seconds: int
    max_failures_per_address: int
    account_free_failures: int
    backoff_max_seconds: int

    @classmethod
    def of(cls, settings: Settings) -> SignInLimits:
        return cls(
            settings.login_max_failures,
            settings.login_lockout_seconds,
            settings.login_max_failures_per_address,
            settings.login_account_free_failures,
            settings.login_backoff_max_seconds,
        )


class LoginThrottle(Protocol):
    def attempt(self, session: Session, keys: SignInKeys) -> int:
        """Counts one sign-in attempt before its credentials are checked; 0 if they may be checked, else
        the seconds to wait. Counting first means parallel attempts cannot all pass a check made before
        any of them failed. The address and the name-from-address are locked after their limits; an
        account name tried from many addresses backs off (each attempt past the free ones makes the
        next wait twice as long), so guessing from many addresses is slowed without locking the owner
        out for long."""
        ...

    def succeeded(self, session: Session, keys: SignInKeys) -> None:
        """The credentials were right: the name's attempts start again from none, and this attempt is
        not held against the address."""
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


# KEYS[1]: an account name's attempts, KEYS[2]: the moment (ms) before which its next one must wait.
# ARGV: the free attempts, the longest wait (s), the window (s) after which the count starts again.
# Each attempt past the free ones reserves the next slot, so parallel attempts wait their turn too.
_COUNT_BACKOFF = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local next_ms = tonumber(redis.call('GET', KEYS[2]) or '0')
if now_ms < next_ms then
  return math.ceil((next_ms - now_ms) / 1000)
end
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local free = tonumber(ARGV[1])
if count > free then
  local wait = math.min(2 ^ (count - free - 1), tonumber(ARGV[2]))
  redis.call('SET', KEYS[2], now_ms + wait * 1000, 'PX', math.floor(wait * 1000))
end
return 0
"""

_FORGIVE = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  redis.call('DECR', KEYS[1])
end
return 0
"""


def _seconds_until(moment: datetime) -> int:
    return max(1, int((moment - utcnow()).total_seconds() + 0.999))


class DatabaseLoginThrottle:
    """Attempts counted in the login_throttles table, in the request's transaction (atomic upserts and
    row locks)."""

    def __init__(self, limits: SignInLimits):
        self.limits = limits

    def _locked(self, session: Session, key: str, allowed: int) -> int:
        count, window_ends = crud.count_login_attempt(session, key, allowed, self.limits.lockout_seconds)
        return 0 if count <= allowed else _seconds_until(window_ends)

    def attempt(self, session: Session, keys: SignInKeys) -> int:
        limits = self.limits
        return (
            self._locked(session, keys.address, limits.max_failures_per_address)
            or self._locked(session, keys.pair, limits.max_failures)
            or crud.count_backoff_attempt(
                session, keys.account, limits.account_free_failures, limits.backoff_max_seconds, limits.lockout_seconds
            )
        )

    def succeeded(self, session: Session, keys: SignInKeys) -> None:
        crud.clear_login_throttle(session, keys.pair)
        crud.clear_login_throttle(session, keys.account)
        crud.forgive_login_attempt(session, keys.address)


class RedisLoginThrottle:
    """Attempts counted in Redis; in the database (`DatabaseLoginThrottle`) while Redis is away."""

    def __init__(self, store: SharedStore, limits: SignInLimits):
        self.store = store
        self.limits = limits
        self.locks = store.redis.register_script(_COUNT_ATTEMPT)
        self.backoff = store.redis.register_script(_COUNT_BACKOFF)
        self.forgive = store.redis.register_script(_FORGIVE)
        self.fallback = DatabaseLoginThrottle(limits)

    def _count(self, client: redis.Redis, keys: SignInKeys) -> int:
        limits = self.limits
        for key, allowed in ((keys.address, limits.max_failures_per_address), (keys.pair, limits.max_failures)):
            if wait := int(
                self.locks(keys=[f"cxr:login:{key}"], args=[allowed, limits.lockout_seconds], client=client)
            ):
                return wait
        backoff_keys = [f"cxr:login:{keys.account}", f"cxr:login:{keys.account}:next"]
        backoff_args = [limits.account_free_failures, limits.backoff_max_seconds, limits.lockout_seconds]
        return int(self.backoff(keys=backoff_keys, args=backoff_args, client=client))

    def attempt(self, session: Session, keys: SignInKeys) -> int:
        wait = self.store.run("logins", lambda client: self._count(client, keys))
        return self.fallback.attempt(session, keys) if wait is None else wait

    def succeeded(self, session: Session, keys: SignInKeys) -> None:
        def clear(client: redis.Redis) -> None:
            client.delete(f"cxr:login:{keys.pair}", f"cxr:login:{keys.account}", f"cxr:login:{keys.account}:next")
            self.forgive(keys=[f"cxr:login:{keys.address}"], client=client)

        self.store.run("logins", clear)
        self.fallback.succeeded(session, keys)  # attempts counted there while Redis was away


def make_limits(settings: Settings, metrics: Metrics) -> tuple[RateLimiter, LoginThrottle]:
    """The request limiter and the sign-in throttle: shared through Redis when REDIS_URL is set."""
    store = SharedStore(settings.redis_url, settings.redis_password, metrics) if settings.redis_url else None
    limits = SignInLimits.of(settings)
    throttle: LoginThrottle = RedisLoginThrottle(store, limits) if store else DatabaseLoginThrottle(limits)
    if settings.rate_limit_per_minute <= 0:
        return NoRateLimit(), throttle
    if store:
        return RedisRateLimiter(store, settings.rate_limit_per_minute), throttle
    return MemoryRateLimiter(settings.rate_limit_per_minute), throttle
