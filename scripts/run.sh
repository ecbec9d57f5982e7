#!/usr/bin/env bash
# Set up and run the whole product locally (embedded default: SQLite + a local object-store folder).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv .venv requirements/run.txt
exec .venv/bin/python scripts/run_local.py "$@"
