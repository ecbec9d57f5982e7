#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite:
# services, gateway on the real Postgres and an S3 server, the browser test, deployment files,
# and (in their own TensorFlow environment) the training pipeline.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

# Debian packages the tests drive for real: the browser, and nginx (+ busybox sh) for the frontend image's config.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v busybox >/dev/null 2>&1 || missing+=(busybox)
# Redis: the gateway's shared limits (tests/api/test_shared_limits.py)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# dciodvfy validates the gateway's DICOM Structured Reports (tests/api/test_hospital_integration.py)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || exit 1
fi
# promtool checks the monitoring pack's rules (tests/deploy/test_monitoring.py); it comes with Debian's
# prometheus package, whose recommended exporters are not needed.
if ! command -v promtool >/dev/null 2>&1; then
    echo "installing prometheus (for promtool) from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || exit 1
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || exit 1
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || exit 1
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || exit 1
fi

ensure_venv .venv requirements/test.txt || exit 1
ensure_venv .venv-training requirements/training.txt || exit 1

started=$(date +%s)
.venv/bin/python -m pytest tests --ignore=tests/training "$@"
services_status=$?
.venv-training/bin/python -m pytest tests/training "$@"
training_status=$?
echo "test suite finished in $(( $(date +%s) - started ))s (services: exit $services_status, training: exit $training_status)"
[ "$services_status" -eq 0 ] && [ "$training_status" -eq 0 ]
