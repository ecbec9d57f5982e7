"""Start the product's services as local processes and wait until they answer.

Used by the embedded run command (run_local.py) and by the test suite, so both start
the services exactly the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """One service process with a health URL; stop() ends it and its children."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], health_url: str, log_path: Path | None = None):
        self.name, self.args, self.health_url = name, args, health_url
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        output = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.health_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} did not become healthy at {self.health_url} in {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill(self) -> None:
        """End it and its children at once with SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def uvicorn_args(factory: str, port: int, host: str = "127.0.0.1") -> list[str]:
    return [PYTHON, "-m", "uvicorn", factory, "--factory", "--host", host, "--port", str(port), "--no-access-log"]


def inference_process(port: int, env: dict[str, str], log_path: Path | None = None) -> ServiceProcess:
    return ServiceProcess(
        "inference",
        uvicorn_args("inference.app:create_app", port),
        env,
        f"http://127.0.0.1:{port}/v2/health/ready",
        log_path,
    )


def gateway_process(port: int, env: dict[str, str], log_path: Path | None = None) -> ServiceProcess:
    # the gateway takes the client's address from X-Forwarded-For itself (TRUSTED_PROXIES), not uvicorn
    args = [*uvicorn_args("gateway.main:create_app", port), "--no-proxy-headers"]
    return ServiceProcess("gateway", args, env, f"http://127.0.0.1:{port}/health/live", log_path)


def s3_process(port: int, log_path: Path | None = None) -> ServiceProcess:
    """moto's S3 server (objects in memory: they end with the process)."""
    args = [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return ServiceProcess("s3", args, {}, f"http://127.0.0.1:{port}/moto-api/", log_path)


def frontend_process(port: int, api_upstream: str, log_path: Path | None = None) -> ServiceProcess:
    args = [PYTHON, str(REPO_ROOT / "services/frontend/serve.py"), "--port", str(port), "--api-upstream", api_upstream]
    return ServiceProcess("frontend", args, {}, f"http://127.0.0.1:{port}/healthz", log_path)


def run_gateway_command(module: str, env: dict[str, str], *args: str) -> str:
    """Run `python -m gateway.<module> args` with the gateway's env; returns what it printed, raises if it fails."""
    completed = subprocess.run(
        [PYTHON, "-m", f"gateway.{module}", *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"gateway.{module} failed:\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def run_prestart(env: dict[str, str]) -> str:
    """Migrate the database and create the first administrator; returns what it printed."""
    return run_gateway_command("prestart", env)
