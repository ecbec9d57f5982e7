"""The whole stack as processes the reliability checks own, each of which can be stopped and started again.

A throw-away Postgres cluster (initdb/pg_ctl in a temp folder, on a free port), moto's S3 server
behind a TCP relay (moto keeps objects in memory, so "the object store is down" is the relay
stopped), the inference service and the gateway pointed at them. Every piece keeps its port
across restarts, as a restarted server would.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from processes import (
    PYTHON,
    REPO_ROOT,
    ServiceProcess,
    free_port,
    gateway_process,
    inference_process,
    run_gateway_command,
    run_prestart,
    s3_process,
)

BUCKET = "cxr-reliability"
S3_KEY = "reliability"
INFERENCE_TIMEOUT_SECONDS = 10.0  # the gateway's longest wait on a dependency (as in the test suite's gateway)


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server's binaries."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name))
    if folders:
        return Path(folders[-1])
    found = shutil.which("pg_ctl")
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) found")
    return Path(found).parent


class PostgresCluster:
    """A cluster of its own in `folder`, trust auth on 127.0.0.1:`port`.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` account.
    """

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.bin = postgres_bin()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            raise RuntimeError(f"{program} failed: {completed.stdout}\n{completed.stderr}")

    def create(self) -> PostgresCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')


def relay_process(port: int, target_port: int, log_path: Path) -> ServiceProcess:
    args = [PYTHON, str(Path(__file__).with_name("relay.py")), str(port), str(target_port)]
    return ServiceProcess("s3-relay", args, {}, f"http://127.0.0.1:{port}/moto-api/", log_path)


@dataclass
class Stack:
    folder: Path
    postgres: PostgresCluster
    s3: ServiceProcess
    relay: ServiceProcess
    inference: ServiceProcess
    gateway: ServiceProcess
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.env["GATEWAY_URL"]

    @property
    def database_dsn(self) -> str:
        return self.env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")

    @property
    def s3_direct_url(self) -> str:
        """moto itself, not the relay: for listing the bucket while the relay is down."""
        return self.s3.health_url.removesuffix("/moto-api/")

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_direct_url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
        )

    def prestart(self) -> str:
        return run_prestart(self.env)

    def reap_orphans(self) -> int:
        """Run the gateway's orphan reaper over every object (no grace period); how many it removed."""
        printed = run_gateway_command("reaper", self.env, "--older-than-minutes", "0")
        return int(printed.strip().splitlines()[-1].split()[0])

    def start_services(self) -> None:
        """Everything but moto (which stays up through restarts: it keeps the objects)."""
        self.postgres.start()
        self.relay.start()
        self.inference.start()
        self.gateway.start()

    def stop_services(self) -> None:
        self.gateway.stop()
        self.inference.stop()
        self.relay.stop()
        self.postgres.stop()

    def close(self) -> None:
        for service in (self.gateway, self.inference, self.relay):
            service.stop()
        try:
            self.postgres.stop()
        except RuntimeError:
            pass  # already stopped
        self.s3.stop()
        shutil.rmtree(self.postgres.folder, ignore_errors=True)  # the logs stay, for a failure's post-mortem


def build_stack(models: Path) -> Stack:
    """Processes defined (none started) for a stack in a new temp folder."""
    folder = Path(tempfile.mkdtemp(prefix="cxr-reliability-"))
    os.chmod(folder, 0o755)  # the postgres account reaches its cluster inside
    s3_port, relay_port, inference_port, gateway_port = free_port(), free_port(), free_port(), free_port()
    postgres = PostgresCluster(folder / "postgres", free_port())
    env = {
        "ENVIRONMENT": "production",
        "DATABASE_URL": postgres.url("cxr"),
        "JWT_SECRET": uuid.uuid4().hex * 2,
        "DEIDENTIFICATION_UID_SECRET": uuid.uuid4().hex * 2,
        "ACCESS_TOKEN_MINUTES": "120",
        "INFERENCE_URL": f"http://127.0.0.1:{inference_port}",
        "INFERENCE_TIMEOUT_SECONDS": str(INFERENCE_TIMEOUT_SECONDS),
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{relay_port}",
        "S3_BUCKET": BUCKET,
        "S3_ACCESS_KEY_ID": S3_KEY,
        "S3_SECRET_ACCESS_KEY": S3_KEY,
        "FIRST_ADMIN_USERNAME": "admin",
        "FIRST_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex,
        "RATE_LIMIT_PER_MINUTE": "0",
        "GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
    }
    return Stack(
        folder=folder,
        postgres=postgres,
        s3=s3_process(s3_port, folder / "s3.log"),
        relay=relay_process(relay_port, s3_port, folder / "relay.log"),
        inference=inference_process(
            inference_port, {"INFERENCE_MODEL_REPOSITORY": str(models)}, folder / "inference.log"
        ),
        gateway=gateway_process(gateway_port, env, folder / "gateway.log"),
        env=env,
    )


def start_stack(models: Path = REPO_ROOT / "models") -> Stack:
    """A migrated, running stack; close() it afterwards."""
    stack = build_stack(models)
    try:
        stack.postgres.create().start()
        stack.postgres.create_database("cxr")
        stack.s3.start()
        stack.relay.start()
        stack.inference.start()
        stack.prestart()
        stack.gateway.start()
    except BaseException:
        stack.close()
        raise
    return stack
