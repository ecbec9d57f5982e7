"""Bounds on work that takes much memory per request: image decoding and password hashing.

A request past the bound waits a little for a slot, then is told to come back (503 with
Retry-After), so a burst costs the process at most `slots` times the work's memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.exceptions import Unavailable


class Slots:
    """At most `count` holders at once; a caller waits up to `wait_seconds` for a slot."""

    def __init__(self, count: int, wait_seconds: float, busy_code: str, busy_detail: str):
        self._semaphore = threading.BoundedSemaphore(count)
        self.count, self.wait_seconds = count, wait_seconds
        self.busy_code, self.busy_detail = busy_code, busy_detail

    @contextmanager
    def held(self) -> Iterator[None]:
        """Holds a slot for the block; `Unavailable` (503) when none is free within `wait_seconds`."""
        if not self._semaphore.acquire(timeout=self.wait_seconds):
            raise Unavailable(self.busy_code, self.busy_detail)
        try:
            yield
        finally:
            self._semaphore.release()
