"""Shared fixtures: the real data, and the real services started as local processes.

This file is loaded by both test environments (services and training), so it imports
only the standard library at module level; service fixtures import what they need.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CXR_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
MODEL_REPOSITORY = Path(os.environ.get("CXR_MODEL_REPOSITORY", REPO_ROOT / "models"))
DEFAULT_MODEL = "pneumonia-xray"

sys.path.insert(0, str(REPO_ROOT / "scripts"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"the shared data folder {DATA_DIR} is absent (set CXR_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def sample_xrays(data_dir) -> dict[str, list[Path]]:
    """The real sample X-ray JPEGs by their true label."""
    return {label: sorted((data_dir / "samples" / label).glob("*.jp*g")) for label in ("normal", "pneumonia")}


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away database on the real Postgres server, dropped after the run."""
    from support import POSTGRES_ADMIN_DSN, throwaway_database

    with throwaway_database(POSTGRES_ADMIN_DSN) as url:
        yield url


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str = "test-access-key"
    secret_access_key: str = "test-secret-key"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def keys(self) -> list[str]:
        response = self.client().list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in response.get("Contents", [])]


@pytest.fixture(scope="session")
def s3_server(logs_dir):
    """A real S3-compatible server (moto in server mode) over HTTP."""
    from processes import PYTHON, ServiceProcess, free_port

    port = free_port()
    server = ServiceProcess(
        "s3",
        [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        {},
        f"http://127.0.0.1:{port}/moto-api/",
        logs_dir / "s3.log",
    ).start()
    yield S3Server(endpoint_url=f"http://127.0.0.1:{port}", bucket="cxr-images-test")
    server.stop()


@pytest.fixture(scope="session")
def inference_url(logs_dir):
    """The real inference service serving the committed model repository."""
    from processes import free_port, inference_process

    port = free_port()
    from support import REPOSITORY_TOKEN

    env = {"INFERENCE_MODEL_REPOSITORY": str(MODEL_REPOSITORY), "INFERENCE_REPOSITORY_TOKEN": REPOSITORY_TOKEN}
    service = inference_process(port, env, logs_dir / "inference.log")
    service.start()
    yield f"http://127.0.0.1:{port}"
    service.stop()


@dataclass
class Gateway:
    url: str
    env: dict[str, str]
    admin_username: str
    admin_password: str


def gateway_env(postgres_url: str, s3: S3Server, inference_url: str) -> dict[str, str]:
    from support import REPOSITORY_TOKEN

    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": postgres_url,
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "DEIDENTIFICATION_UID_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        # every test signs in from 127.0.0.1: the per-address sign-in lock is tested on gateways of its own
        "LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        # and every refused token comes from there: the audit trail's aggregation of repeated failures is
        # tested on a gateway of its own, the other tests find each failure's own event
        "AUDIT_FAILURES_IN_FULL_PER_MINUTE": "100000",
        # the severity grade after a COVID-19 finding is tested with the committed severity model; a deployment
        # runs it only when FOLLOWUP_MODELS names it (off by default: its held-out figures do not justify it)
        "FOLLOWUP_MODELS": "covid-ct-severity",
        "INFERENCE_URL": inference_url,
        "INFERENCE_REPOSITORY_TOKEN": REPOSITORY_TOKEN,
        "INFERENCE_TIMEOUT_SECONDS": "10",
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "S3_BUCKET": s3.bucket,
        "S3_ACCESS_KEY_ID": s3.access_key_id,
        "S3_SECRET_ACCESS_KEY": s3.secret_access_key,
        "FIRST_ADMIN_USERNAME": "admin",
        "FIRST_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex,
    }


@pytest.fixture(scope="session")
def gateway(postgres_url, s3_server, inference_url, logs_dir):
    """The real gateway on Postgres, the S3 server and the inference service, migrated by prestart."""
    from processes import free_port, gateway_process, run_prestart

    env = gateway_env(postgres_url, s3_server, inference_url)
    run_prestart(env)
    port = free_port()
    service = gateway_process(port, env, logs_dir / "gateway.log").start()
    yield Gateway(f"http://127.0.0.1:{port}", env, env["FIRST_ADMIN_USERNAME"], env["FIRST_ADMIN_PASSWORD"])
    service.stop()


@pytest.fixture(scope="session")
def frontend_url(gateway, logs_dir):
    """The frontend's static files, with the gateway under /api, as nginx serves them."""
    from processes import free_port, frontend_process

    port = free_port()
    service = frontend_process(port, gateway.url, logs_dir / "frontend.log").start()
    yield f"http://127.0.0.1:{port}"
    service.stop()


@pytest.fixture(scope="session")
def admin_client(gateway):
    """An HTTP client logged in as the first administrator through the real endpoint."""
    import httpx
    from support import login

    token = login(gateway.url, gateway.admin_username, gateway.admin_password)
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


@pytest.fixture
def database(postgres_url):
    """A psycopg connection to the gateway's Postgres database, for checking what was stored."""
    import psycopg

    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as connection:
        yield connection


@pytest.fixture
def clinician_client(admin_client, gateway):
    """An HTTP client signed in as a new clinician through the real endpoint."""
    from support import bearer_client, login, new_user

    username, password = new_user(admin_client, "clinician")
    with bearer_client(gateway.url, login(gateway.url, username, password)) as client:
        yield client


@pytest.fixture
def service_client(admin_client, gateway):
    """An HTTP client holding a client-credentials token of a new API client (`.api_client` has its record)."""
    from support import bearer_client, client_credentials_token, new_api_client

    api_client = new_api_client(admin_client)
    token = client_credentials_token(gateway.url, api_client["client_id"], api_client["client_secret"])
    with bearer_client(gateway.url, token) as client:
        client.api_client = api_client
        yield client


@pytest.fixture
def start_inference(logs_dir, tmp_path):
    """Starts another real inference service with extra settings (env vars); returns its URL; stops it afterwards."""
    from processes import free_port, inference_process

    started = []

    def start(env: dict[str, str]) -> str:
        port = free_port()
        env = {
            "INFERENCE_MODEL_REPOSITORY": str(MODEL_REPOSITORY),
            "INFERENCE_MODEL_CACHE_DIR": str(tmp_path / "cache"),
            **env,
        }
        started.append(inference_process(port, env, logs_dir / f"inference-{port}.log").start())
        return f"http://127.0.0.1:{port}"

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def gateway_with(gateway, logs_dir):
    """Start another gateway on the same database and object store with some settings overridden;
    returns an HTTP client signed in there as the administrator."""
    import httpx
    from processes import free_port, gateway_process
    from support import login

    started = []

    def start(**overrides):
        service = gateway_process(free_port(), gateway.env | overrides, logs_dir / "gateway-faulty.log").start()
        started.append(service)
        url = service.health_url.removesuffix("/health/live")
        token = login(url, gateway.admin_username, gateway.admin_password)
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def dicom_without_pixels(data_dir) -> bytes:
    """The real CT slice's file with its pixel data removed: a DICOM that holds no image."""
    import io

    import pydicom

    dataset = pydicom.dcmread(data_dir / "dicom" / "CT_small.dcm")
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
