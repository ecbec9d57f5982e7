"""Object storage for uploaded images: S3 (boto3) in production, a local folder embedded.

Both backends have the same interface, so the rest of the gateway does not know which runs.
"""

from __future__ import annotations

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
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.exceptions import Unavailable
from gateway.settings import StorageSettings

log = logging.getLogger(__name__)


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
    def __init__(self, settings: StorageSettings):
        self.bucket = settings.s3_bucket
        # x-amz-server-side-encryption on every upload (none: the bucket's default encryption applies)
        sse = settings.s3_server_side_encryption
        self.encryption = {"ServerSideEncryption": sse} if sse else {}
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
        with _unavailable_on_error():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **self.encryption)

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
