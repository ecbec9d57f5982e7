"""The model repository: `<root>/<model>/<version>/model.onnx + model.json`."""

from __future__ import annotations

import logging
from pathlib import Path

from inference.card import CARD_FILE
from inference.errors import ModelNotFound, ModelNotReady
from inference.model import OnnxModel
from inference.settings import Settings

log = logging.getLogger(__name__)


class ModelRepository:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.models: dict[str, dict[str, OnnxModel]] = {}
        self.load_errors: dict[str, str] = {}

    def load_all(self) -> None:
        """Load every version found; one broken model is reported, not fatal to the others."""
        root = self.settings.model_repository
        for card_path in sorted(root.glob(f"*/*/{CARD_FILE}")):
            model = OnnxModel(card_path.parent, self.settings)
            try:
                model.load()
            except Exception as exc:  # any failure to load is reported per model
                key = f"{model.name}/{model.version}"
                self.load_errors[key] = str(exc)
                log.error("model %s failed to load: %s", key, exc)
                continue
            self.models.setdefault(model.name, {})[model.version] = model
            log.info("loaded model %s version %s", model.name, model.version)

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
            version = self.versions(name)[-1]
        model = versions.get(version)
        if model is None:
            raise ModelNotFound(f"model '{name}' has no version '{version}'")
        if not model.ready:
            raise ModelNotReady(f"model '{name}' version '{version}' is not ready")
        return model


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)
