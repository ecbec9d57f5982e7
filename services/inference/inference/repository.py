"""The model repository: `<root>/<model>/<version>/model.onnx + model.json`.

The root is a local folder or an S3 prefix (copied to a local cache first). `refresh()`
brings the loaded versions in line with what the root holds: new versions are loaded,
removed ones unloaded, and a version that fails to load is reported, not fatal.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from cxr_model.card import CARD_FILE, ONNX_FILE
from inference.errors import ModelNotFound, ModelNotReady
from inference.model import OnnxModel
from inference.s3sync import S3Mirror
from inference.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IndexEntry:
    name: str
    version: str
    state: str  # READY or UNAVAILABLE
    reason: str = ""


class ModelRepository:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.models: dict[str, dict[str, OnnxModel]] = {}
        self.load_errors: dict[str, str] = {}
        self.unloaded: set[str] = set()  # names unloaded by the admin call; refresh leaves them out
        self._tried: dict[str, tuple] = {}  # version key -> file signature last loaded or failed
        self._lock = threading.Lock()
        self.mirror: S3Mirror | None = None
        if settings.model_repository.startswith("s3://"):
            self.mirror = S3Mirror(settings.model_repository, settings.model_cache_dir, settings.s3_endpoint_url)
            self.root = settings.model_cache_dir
        else:
            self.root = Path(settings.model_repository)

    def load_all(self) -> None:
        self.refresh()

    def refresh(self) -> list[IndexEntry]:
        """Load versions that appeared or changed, unload those that went away."""
        with self._lock:
            self._sync_mirror()
            found = {key: _signature(path) for key, path in self._version_dirs().items()}
            for key in set(self._tried) - set(found):
                self._forget(key)
            for key, signature in sorted(found.items()):
                if self._tried.get(key) != signature and key.split("/")[0] not in self.unloaded:
                    self._load(key, signature)
            return self.index()

    def load(self, name: str) -> None:
        """(Re)load every version of one model, also one unloaded before."""
        with self._lock:
            self.unloaded.discard(name)
            for key in [key for key in self._tried if key.split("/")[0] == name]:
                self._forget(key)
        self.refresh()
        if name not in self.models:
            raise ModelNotFound(f"model '{name}' has no version that loads: {self._errors_of(name)}")

    def unload(self, name: str) -> None:
        with self._lock:
            if name not in self.models:
                raise ModelNotFound(f"model '{name}' is not loaded")
            self.unloaded.add(name)
            for key in [key for key in self._tried if key.split("/")[0] == name]:
                self._forget(key)

    def index(self) -> list[IndexEntry]:
        entries = [IndexEntry(name, version, "READY") for name in self.models for version in self.versions(name)]
        entries += [
            IndexEntry(*_name_and_version(key), "UNAVAILABLE", reason) for key, reason in self.load_errors.items()
        ]
        entries += [IndexEntry(name, "", "UNAVAILABLE", "unloaded") for name in sorted(self.unloaded)]
        return sorted(entries, key=lambda entry: (entry.name, _version_key(entry.version)))

    @property
    def ready(self) -> bool:
        return bool(self.models) and all(m.ready for versions in self.models.values() for m in versions.values())

    def versions(self, name: str) -> list[str]:
        return sorted(self.models.get(name, {}), key=_version_key)

    def get(self, name: str, version: str | None = None) -> OnnxModel:
        """The named version, or the highest one when no version is given."""
        versions = self.models.get(name)
        if not versions:
            raise ModelNotFound(f"model '{name}' is not in the repository")
        if version is None:
            version = max(versions, key=_version_key)
        model = versions.get(version)
        if model is None:
            raise ModelNotFound(f"model '{name}' has no version '{version}'")
        if not model.ready:
            raise ModelNotReady(f"model '{name}' version '{version}' is not ready")
        return model

    def all_models(self) -> list[OnnxModel]:
        return [model for versions in self.models.values() for model in versions.values()]

    def _sync_mirror(self) -> None:
        if self.mirror is None:
            return
        try:
            self.mirror.sync()
        except Exception as exc:  # S3 unreachable: keep serving what the cache holds
            log.error("the S3 model repository cannot be read, serving the local copy: %s", exc)

    def _version_dirs(self) -> dict[str, Path]:
        return {
            f"{path.parent.parent.name}/{path.parent.name}": path.parent for path in self.root.glob(f"*/*/{CARD_FILE}")
        }

    def _load(self, key: str, signature: tuple) -> None:
        self._forget(key)
        self._tried[key] = signature
        try:
            model = OnnxModel.load(self.root / key, self.settings)
        except Exception as exc:  # any failure to load is reported per model
            self.load_errors[key] = str(exc)
            log.error("model %s failed to load: %s", key, exc)
            return
        # a new dict, so readers never see one being changed
        self.models = {**self.models, model.name: {**self.models.get(model.name, {}), model.version: model}}
        log.info("loaded model %s version %s", model.name, model.version)

    def _forget(self, key: str) -> None:
        name, version = _name_and_version(key)
        self._tried.pop(key, None)
        self.load_errors.pop(key, None)
        model = self.models.get(name, {}).get(version)
        if model is None:
            return
        remaining = {v: m for v, m in self.models[name].items() if v != version}
        self.models = {n: vs for n, vs in {**self.models, name: remaining}.items() if vs}
        model.unload()
        log.info("unloaded model %s version %s", name, version)

    def _errors_of(self, name: str) -> dict[str, str]:
        return {key: reason for key, reason in self.load_errors.items() if key.split("/")[0] == name}


def _signature(version_dir: Path) -> tuple:
    """Changes when either file of a version is replaced."""
    files = [version_dir / CARD_FILE, version_dir / ONNX_FILE]
    return tuple((stat.st_mtime_ns, stat.st_size) for stat in (f.stat() for f in files if f.exists()))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _name_and_version(key: str) -> tuple[str, str]:
    name, version = key.split("/")
    return name, version
