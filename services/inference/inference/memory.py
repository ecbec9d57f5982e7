"""The allocator tuned for inference: fast while busy, small when idle.

A call's activations are freed when it ends. Given back to the OS at once (glibc's default
for small heaps, or blocks above its mmap threshold), the next call faults every page in
again: a compute-heavy model (a 300x300 VGG) ran 60% slower. Left to glibc's adaptive
thresholds, concurrent calls grew the heap by over 1 GiB that stayed. So, at start:
blocks up to 16 MiB (a batch of one's activations, for typical models) come from the heap,
larger ones (big batches) are mapped and unmapped; the heap is not trimmed after each call.
What calls freed goes back to the OS after `memory_release_idle_seconds` without a call.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Protocol

from anyio import to_thread

log = logging.getLogger(__name__)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
HEAP_BLOCKS_UP_TO = 16 * 1024 * 1024
_NO_TRIM_AFTER_FREE = 1 << 30


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _glibc()
_MALLOC_TRIM = _LIBC.malloc_trim if _LIBC else None


def tune_allocator() -> None:
    """Heap for blocks up to HEAP_BLOCKS_UP_TO, mapped above; no trimming after each free (see the module).

    One heap for every thread: with glibc's heap per thread, what a worker thread's heap kept of a
    batch once idle varied from none to nearly all of it (fragments left at its top); one heap gave it
    all back every time. Each thread's own cache of small blocks keeps them from contending for it."""
    if _LIBC is None:
        log.info("not glibc: the allocator keeps its defaults and memory is not released when idle")
        return
    _LIBC.mallopt(_M_ARENA_MAX, 1)
    _LIBC.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM_AFTER_FREE)


def release_free_memory() -> bool:
    """Give the allocator's free memory back to the OS; False where that is not possible (not glibc)."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class Activity(Protocol):
    in_flight: int  # calls being answered
    calls_finished: int


async def release_memory_when_idle(activity: Activity, idle_seconds: float) -> None:
    """Release once calls have finished since the last release and a whole `idle_seconds` has passed without one
    running or finishing: what the last call's answer held is freed by then (released at the first quiet
    moment, it stayed in the process)."""
    if idle_seconds <= 0 or _MALLOC_TRIM is None:
        return
    released_after = seen = activity.calls_finished
    while True:
        await asyncio.sleep(idle_seconds)
        finished = activity.calls_finished
        if activity.in_flight == 0 and finished == seen and finished != released_after:
            released_after = finished
            await to_thread.run_sync(release_free_memory)
        seen = finished
