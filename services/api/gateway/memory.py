"""Large blocks (an Argon2 check's 19 MiB, a decoded image) are mapped and unmapped, never kept by a thread.

glibc raises its mmap threshold to the size of each mapped block freed (up to 32 MiB); larger blocks
then come from the arena of the thread that asked, and stay there when freed. Each thread of the
pool that routes run in kept what its largest password check or image took: twelve sign-ins on
twelve threads kept ~190 MiB. A fixed threshold keeps the threshold where it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MAPPED_FROM_BYTES = 1024 * 1024


def map_large_blocks() -> None:
    """Blocks from MAPPED_FROM_BYTES up are mapped, and given back when freed (glibc; elsewhere nothing changes)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return
    if hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, MAPPED_FROM_BYTES)
