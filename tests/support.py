"""Small helpers the tests share (imported by conftest.py and test modules)."""

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

# the session's inference service requires it on its repository calls (the gateway sends it)
REPOSITORY_TOKEN = uuid.uuid4().hex
POSTGRES_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def login(base_url: str, username: str, password: str) -> str:
    """A bearer token from the gateway's real login endpoint."""
    response = httpx.post(f"{base_url}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@contextmanager
def throwaway_database(admin_dsn: str, prefix: str = "cxr_test"):
    """A new, empty database on the real Postgres server (its SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = dict(item.split("=", 1) for item in admin_dsn.split())
    try:
        yield f"postgresql+psycopg://{params['user']}@{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_user(admin_client: httpx.Client, role: str = "clinician") -> tuple[str, str]:
    """A new account created through the admin endpoint; returns its username and password."""
    username = f"{role}-{uuid.uuid4().hex[:10]}"
    password = "pw-" + uuid.uuid4().hex
    response = admin_client.post("/users", json={"username": username, "password": password, "role": role})
    assert response.status_code == 201, response.text
    return username, password


def new_api_client(admin_client: httpx.Client) -> dict:
    """A new API client (its id, client_id and the once-shown client_secret)."""
    response = admin_client.post("/clients", json={"name": f"ris-{uuid.uuid4().hex[:10]}"})
    assert response.status_code == 201, response.text
    return response.json()


def client_credentials_grant(base_url: str, client_id: str, client_secret: str) -> httpx.Response:
    """POST /auth/token with the client-credentials flow, as a hospital system signs in."""
    return httpx.post(
        f"{base_url}/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
    )


def client_credentials_token(base_url: str, client_id: str, client_secret: str) -> str:
    response = client_credentials_grant(base_url, client_id, client_secret)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


MODEL_REPOSITORY = Path(os.environ.get("CXR_MODEL_REPOSITORY", Path(__file__).resolve().parents[1] / "models"))


def latest_model_version(model: str = "pneumonia-xray") -> str:
    """The version the inference service serves when none is asked for: the highest in the model repository."""
    versions = [path.name for path in (MODEL_REPOSITORY / model).iterdir() if (path / "model.json").is_file()]
    return max(versions, key=int)


def png_image(pixels) -> bytes:
    """PNG bytes of a uint8 numpy array (grey H x W)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def blank_png(width: int = 256, height: int = 256) -> bytes:
    """An all-black image: nothing like a chest X-ray (flagged with the widest margin of these)."""
    import numpy as np

    return png_image(np.zeros((height, width), np.uint8))


def noise_png(width: int = 256, height: int = 256) -> bytes:
    """Uniform random grey levels (a fixed seed): nothing like a chest X-ray."""
    import numpy as np

    return png_image(np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8))


def stored_counts(database, s3_server) -> tuple[int, int, int]:
    """Rows in images and results, and objects in the bucket: what a request may have stored."""
    images = database.execute("SELECT count(*) FROM images").fetchone()[0]
    results = database.execute("SELECT count(*) FROM results").fetchone()[0]
    database.commit()
    return images, results, len(s3_server.keys())


def token_claims(subject: str, role: str = "clinician", **overrides) -> dict:
    """The claims of a valid access token for a user, as the gateway issues them; an override of None drops a claim."""
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "role": role,
        "kind": "user",
        "iss": "cxr-gateway",
        "aud": "cxr-api",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    } | overrides
    return {name: value for name, value in claims.items() if value is not None}


def run_async(coroutine):
    """Runs a coroutine to its end on a fresh event loop in its own thread.

    The browser tests' Playwright (sync API) keeps an event loop running in the main thread for
    the whole session, where asyncio.run() would refuse to start.
    """
    with ThreadPoolExecutor(max_workers=1) as runner:
        return runner.submit(asyncio.run, coroutine).result()


def dicom_file(dataset, transfer_syntax=None, **attributes) -> bytes:
    """The data set as a DICOM file, with some attributes set first (None deletes one); with a transfer
    syntax, its file meta is written anew from the data set's SOP Class and Instance UIDs."""
    import io

    from pydicom.dataset import FileMetaDataset

    for keyword, value in attributes.items():
        if value is None:
            dataset.pop(keyword, None)
        else:
            setattr(dataset, keyword, value)
    if transfer_syntax is not None:
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.file_meta.TransferSyntaxUID = transfer_syntax
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
