"""Object storage for uploaded images: S3 (boto3) in production, a local folder embedded.

Both backends have the same interface, so the rest of the gateway does not know which runs.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import get_cert_path

from gateway.exceptions import Unavailable
from gateway.settings import StorageSettings

log = logging.getLogger(__name__)

_UPLOAD_CONNECTIONS = 20  # kept open to the object store; more are opened (and closed) under higher load
_UPLOAD_URL_SECONDS = 60  # an upload's signature is used at once (and once more for a retry)


class StorageUnavailable(Unavailable):
    """The object store cannot be reached or failed; `reason` says how (it is logged, never answered)."""

    def __init__(self, reason: str):
        super().__init__("storage_unavailable", "the object store is unavailable; retry later")
        self.reason = reason


class ObjectNotFound(Exception):
    pass


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime


class ObjectStore(Protocol):
    def ensure_bucket(self) -> None: ...
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def list_objects(self, prefix: str) -> Iterator[StoredObject]: ...
    def check(self) -> None: ...


class S3ObjectStore:
    """Objects in an S3 bucket, through boto3.

    An upload (one per classification) is a PUT that boto3 signs (a presigned URL, with the image's
    Content-MD5, which S3 checks) sent on a kept-alive urllib3 connection: a third of the CPU time of
    `put_object`, whose per-call event handlers, serialisation and response parsing cost about 2 ms.
    """

    def __init__(self, settings: StorageSettings):
        self.bucket = settings.s3_bucket
        # x-amz-server-side-encryption on every upload (none: the bucket's default encryption applies)
        sse = settings.s3_server_side_encryption
        self.encryption = {"ServerSideEncryption": sse} if sse else {}
        self.encryption_headers = {"x-amz-server-side-encryption": sse} if sse else {}
        self.uploads = urllib3.PoolManager(
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True),  # what boto3 verifies with
            maxsize=_UPLOAD_CONNECTIONS,
            timeout=urllib3.Timeout(connect=3, read=10),
            retries=urllib3.Retry(total=1, status_forcelist=(500, 502, 503, 504), backoff_factor=0.1),
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=Config(
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
                signature_version="s3v4",  # presigned uploads too (boto3 presigns with SigV2 without it)
            ),
        )

    def ensure_bucket(self) -> None:
        with _unavailable_on_error():
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
                    raise
                self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        params = {"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentMD5": md5, **self.encryption}
        headers = {"Content-Type": content_type, "Content-MD5": md5, **self.encryption_headers}
        with _unavailable_on_error():
            url = self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=_UPLOAD_URL_SECONDS)
        try:
            response = self.uploads.request("PUT", url, body=data, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise StorageUnavailable(f"PUT {key}: {exc}") from exc
        if response.status != 200:
            raise StorageUnavailable(f"PUT {key} answered {response.status}: {response.data[:300]!r}")

    def get(self, key: str) -> bytes:
        with _unavailable_on_error():
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    raise ObjectNotFound(key) from exc
                raise

    def delete(self, key: str) -> None:
        with _unavailable_on_error():
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        with _unavailable_on_error():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"], item["LastModified"])

    def check(self) -> None:
        with _unavailable_on_error():
            self.client.head_bucket(Bucket=self.bucket)


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise StorageUnavailable(str(exc)) from exc


class LocalObjectStore:
    """A folder standing in for a bucket (embedded default; one machine only)."""

    def __init__(self, settings: StorageSettings):
        self.root = Path(settings.local_storage_dir).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"object key escapes the store: {key}")
        return path

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write then rename, so a reader never sees half a file
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix):
                yield StoredObject(key, datetime.fromtimestamp(path.stat().st_mtime, UTC))

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageUnavailable(f"{self.root} is not a folder")


def make_object_store(settings: StorageSettings) -> ObjectStore:
    return S3ObjectStore(settings) if settings.storage_backend == "s3" else LocalObjectStore(settings)


def remove_or_log(store: ObjectStore, key: str) -> None:
    """Remove an object; one the store refuses to remove is logged, and the orphan reaper removes it later."""
    try:
        store.delete(key)
    except StorageUnavailable as exc:
        log.error("could not remove object %s (%s); the orphan reaper will", key, exc.reason)
