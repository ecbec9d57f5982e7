#!/usr/bin/env bash
# The long form of the reliability and security evidence (issue 8), in one command; prints one table.
#   load: RELIABILITY_REQUESTS (10,000) uploads at concurrency 32, then rows vs objects reconciled;
#   faults under load: object store stopped, database stopped, inference killed (SIGKILL) and restarted;
#   durability: the stack restarted, every result and image read back, migrations re-run as a no-op;
#   the hostile-file corpus; schemathesis on both OpenAPI schemas (FUZZ_MAX_EXAMPLES per operation, 150);
#   the auth attacks. The short form of each is part of the normal test suite (scripts/test.sh).
# usage: bash scripts/verify.sh [extra pytest arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || exit 1
fi
ensure_venv .venv requirements/test.txt || exit 1

results=$(mktemp -d /tmp/cxr-verify-XXXXXX)
export RELIABILITY_RESULTS_DIR="$results" PYTHONPATH="tests:scripts"
export RELIABILITY_REQUESTS="${RELIABILITY_REQUESTS:-10000}" FUZZ_MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-150}"
started=$(date +%s)
.venv/bin/python -m pytest tests/reliability tests/security tests/fuzz -p reliability.plugin -q -rfE "$@" \
    > "$results/pytest.log" 2>&1
tests_status=$?
grep -E "^(FAILED|ERROR) |^[0-9]+ (passed|failed)|in [0-9.]+s" "$results/pytest.log" | tail -n 40
echo
echo "long form: $RELIABILITY_REQUESTS requests, $FUZZ_MAX_EXAMPLES fuzz cases per operation," \
    "$(( $(date +%s) - started ))s; figures in $results"
.venv/bin/python -m reliability.evidence "$results"
table_status=$?
[ "$tests_status" -eq 0 ] && [ "$table_status" -eq 0 ]
