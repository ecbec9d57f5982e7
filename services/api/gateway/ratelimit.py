"""Per-caller request limits in fixed one-minute windows: in Redis when configured, else in memory."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import redis

from gateway.settings import Settings

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60


class RateLimiter(Protocol):
    def seconds_to_wait(self, key: str) -> int:
        """Counts one request for `key`; 0 if it is allowed, else the seconds until the window ends."""
        ...


def _window() -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    now = time.time()
    return int(now // WINDOW_SECONDS), WINDOW_SECONDS - int(now % WINDOW_SECONDS)


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
            counted_window, count = self.counts.get(key, (window, 0))
            count = count + 1 if counted_window == window else 1
            self.counts[key] = (window, count)
        return left if count > self.per_minute else 0


class RedisRateLimiter:
    """Counts shared by every replica; if Redis is unreachable requests are let through (and logged)."""

    def __init__(self, url: str, per_minute: int):
        self.per_minute = per_minute
        self.redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def seconds_to_wait(self, key: str) -> int:
        window, left = _window()
        counter = f"cxr:ratelimit:{key}:{window}"
        pipeline = self.redis.pipeline()
        pipeline.incr(counter)
        pipeline.expire(counter, WINDOW_SECONDS * 2)
        try:
            count, _ = pipeline.execute()
        except redis.RedisError as exc:
            log.warning("rate limiting skipped, Redis unavailable: %s", exc)
            return 0
        return left if count > self.per_minute else 0


def make_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.rate_limit_per_minute <= 0:
        return NoRateLimit()
    if settings.rate_limit_redis_url:
        return RedisRateLimiter(settings.rate_limit_redis_url, settings.rate_limit_per_minute)
    return MemoryRateLimiter(settings.rate_limit_per_minute)
