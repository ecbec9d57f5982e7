"""The peer benchmark (benchmarks/peer_benchmark.py) in its quick mode, and its noise bookkeeping.

Only this service runs here (and itself at HEAD, the before/after row): the peers' virtual
environments take minutes to make, which the full benchmark does on its first run.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import peer_benchmark  # noqa: E402


def test_quick_run_prints_one_table_of_checked_answers(tmp_path):
    cells_path = tmp_path / "cells.json"
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "peer_benchmark.py"), "--quick", "--servers", "ours"]
    command += ["--baseline", "HEAD", "--work-dir", str(tmp_path / "work"), "--json-out", str(cells_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    table = completed.stdout
    for protocol in ("json", "binary"):
        for concurrency in (1, 8):
            assert f"| {protocol} | {concurrency} | this service |" in table
    assert "Every answer checked" in table and "log lines per request: this service 1.00" in table
    cells = json.loads(cells_path.read_text())
    assert {(cell["server"], cell["protocol"], cell["concurrency"]) for cell in cells} == {
        (server, protocol, concurrency)
        for server in ("ours", "baseline")
        for protocol in ("json", "binary")
        for concurrency in (1, 8)
    }
    for cell in cells:
        assert cell["per_second"] > 0 and cell["p99_ms"] >= cell["p50_ms"] > 0
        assert cell["max_difference"] <= peer_benchmark.TOLERANCE and cell["tries"] == 1
        assert cell["server_cpu_us"] > 0


def test_cpu_of_other_processes_is_counted_and_ours_is_not():
    busy = "import time\nend = time.time() + 0.6\nwhile time.time() < end: pass"
    other = subprocess.Popen([sys.executable, "-c", busy])
    with peer_benchmark.CpuWatch([os.getpid()]) as watch:
        other.wait()
    assert watch.other_cores >= 0.4  # about one core for the 0.6 s it ran (10 ms clock ticks)

    mine = subprocess.Popen([sys.executable, "-c", busy])
    with peer_benchmark.CpuWatch([mine.pid]) as watch:
        time.sleep(0.4)  # read while it still runs: the seconds of a process that ended are gone
    mine.wait()
    assert watch.each[0] >= 0.1  # the measured process's own seconds (a share of a busy machine)


@pytest.mark.parametrize("split", [1, 5, 17, 40])
def test_chunked_answers_are_read_whole_whatever_arrives_when(split):
    body = b"a" * 20 + b"b" * 7
    wire = b"14\r\n" + b"a" * 20 + b"\r\n7;ext=1\r\n" + b"b" * 7 + b"\r\n0\r\n\r\nNEXT"
    assert peer_benchmark._chunked_body(bytearray(wire[:split]), 0) is None
    assert peer_benchmark._chunked_body(bytearray(wire), 0) == (body, len(wire) - 4)
