"""Mirror an S3 prefix holding a model repository into a local folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import boto3

log = logging.getLogger(__name__)


def _safe_relative(key: str) -> str | None:
    """The key as a path inside the mirror, or None for one that would leave it (`..`, absolute, empty parts)."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts[:-1])
        or parts[-1] in (".", "..")
    ):
        return None
    return key


class S3Mirror:
    """`sync()` makes `local_root` hold exactly the objects under `s3://bucket/prefix`."""

    def __init__(self, url: str, local_root: Path, endpoint_url: str | None = None):
        parsed = urlparse(url)
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.local_root = local_root
        # credentials and region come from the standard AWS_* environment variables
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def sync(self) -> None:
        remote = self._list()
        for relative, (size, modified) in remote.items():
            target = self.local_root / relative
            if not target.exists() or target.stat().st_size != size or target.stat().st_mtime != modified:
                self._download(f"{self.prefix}/{relative}".lstrip("/"), target, modified)
        for path in [p for p in self.local_root.rglob("*") if p.is_file()]:
            if path.relative_to(self.local_root).as_posix() not in remote:
                path.unlink()

    def _list(self) -> dict[str, tuple[int, float]]:
        """Relative path -> (size, last-modified timestamp) of every object under the prefix."""
        found = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""):
            for item in page.get("Contents", []):
                relative = _safe_relative(item["Key"][len(self.prefix) + 1 if self.prefix else 0 :])
                if relative is None:
                    log.warning("skipped s3://%s/%s: not a plain path under the prefix", self.bucket, item["Key"])
                elif not relative.endswith("/"):
                    found[relative] = (item["Size"], item["LastModified"].timestamp())
        return found

    def _download(self, key: str, target: Path, modified: float) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        self.client.download_file(self.bucket, key, str(partial))
        os.utime(partial, (modified, modified))  # the mtime marks which object version this is
        partial.replace(target)
        log.info("downloaded s3://%s/%s", self.bucket, key)
