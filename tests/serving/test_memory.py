"""Memory after large batches goes back to the OS (glibc's mmap threshold fixed at start)."""

import subprocess
import sys

import pytest

# Frees one 1 MiB block (glibc then raises its mmap threshold), fills 200 MiB in 1 MiB blocks,
# frees all but the last (which pins the heap's top) and prints how much RSS stayed.
PROGRAM = """
import sys
import numpy as np
if sys.argv[1] == "fixed":
    from inference.app import return_large_blocks_to_the_os
    return_large_blocks_to_the_os()
def rss_mib():
    status = open("/proc/self/status").read()
    return int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS"))) / 1024
del_me = np.ones(1 << 20, np.uint8); del del_me
before = rss_mib()
blocks = [np.ones(1 << 20, np.uint8) for _ in range(200)]
last = blocks.pop(); del blocks
print(rss_mib() - before)
"""


def retained_mib(mode: str) -> float:
    completed = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return float(completed.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc behaviour")
def test_freed_batch_memory_is_returned_to_the_os():
    assert retained_mib("default") > 150  # glibc's default keeps it: the check below can fail
    assert retained_mib("fixed") < 20
