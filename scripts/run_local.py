"""Run the whole product on this machine with the embedded defaults.

SQLite and a local folder stand in for Postgres and S3 (same interfaces); the bundled
model repository is served by the real inference service. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time

from processes import REPO_ROOT, frontend_process, gateway_process, inference_process, run_prestart

STATE_DIR = REPO_ROOT / ".local"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FRONTEND_PORT", 8080)))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", 8000)))
    parser.add_argument("--inference-port", type=int, default=int(os.environ.get("INFERENCE_PORT", 8001)))
    return parser.parse_args()


def development_secret(name: str = "jwt-secret") -> str:
    """A random secret kept in .local/ so sessions (and pseudonyms) survive a restart of the local run."""
    path = STATE_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the services on SIGTERM too, not only Ctrl-C
    STATE_DIR.mkdir(exist_ok=True)
    logs = STATE_DIR / "logs"
    logs.mkdir(exist_ok=True)
    gateway_env = {
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite:///{STATE_DIR / 'cxr.db'}",
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(STATE_DIR / "objects"),
        "JWT_SECRET": development_secret(),
        "DEIDENTIFICATION_UID_SECRET": development_secret("deidentification-secret"),
        "INFERENCE_URL": f"http://127.0.0.1:{args.inference_port}",
        "INFERENCE_REPOSITORY_TOKEN": development_secret("inference-repository-token"),
        "TRUSTED_PROXIES": "127.0.0.1",  # the local frontend's proxy
    }
    created = run_prestart(gateway_env)
    print(
        created or "Sign in with the administrator created on the first run (delete .local/ to start afresh).", end="\n"
    )
    services = []
    try:
        inference_env = {"INFERENCE_REPOSITORY_TOKEN": gateway_env["INFERENCE_REPOSITORY_TOKEN"]}
        services.append(inference_process(args.inference_port, inference_env, logs / "inference.log").start())
        services.append(gateway_process(args.api_port, gateway_env, logs / "gateway.log").start())
        api = f"http://127.0.0.1:{args.api_port}"
        services.append(frontend_process(args.port, api, logs / "frontend.log").start())
        print(f"Chest-imaging classification is running: open http://127.0.0.1:{args.port}")
        print(f"API gateway: {api} (docs at {api}/docs); logs in {logs}; Ctrl-C stops.", flush=True)
        while all(service.process.poll() is None for service in services):
            time.sleep(1)
        print("a service stopped; see the logs", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    main()
