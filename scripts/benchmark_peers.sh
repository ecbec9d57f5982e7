#!/usr/bin/env bash
# This inference service next to KServe's and MLServer's Python servers, JSON and binary,
# concurrency 1/8/32: one table with req/s, p50, p99 and the ratio to the faster peer.
# The peers' virtual environments are made under --work-dir (default /tmp/cxr-peer-bench)
# on the first run (a few minutes, pip from PyPI) and reused after.
#
#   bash scripts/benchmark_peers.sh [--requests 2000] [--baseline HEAD] [--quick] [--profile] [--help]
#
# Runs in .venv (the services' environment, as the test command makes it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
ensure_venv .venv requirements/test.txt

exec .venv/bin/python benchmarks/peer_benchmark.py "$@"
