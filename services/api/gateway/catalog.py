"""The deployed models as the inference service describes them: each one's card (its classes, intended
use, metrics and known limits), which the gateway routes images by and the model page shows.

They are read from the inference service (`POST /v2/repository/index` lists the models, `GET
/v2/models/{name}` gives each one's default version with its card's fields in `parameters`), kept
for `model_catalog_ttl_seconds`, and read again sooner when a model is not found. A model whose
card cannot be read is left out (and logged): no image is sent to a model whose intended use is
not known.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cxr_model.answer import ClassInfo
from cxr_model.card import CardSummary
from cxr_model.intended_use import IntendedUse
from gateway.exceptions import NotFound, Unavailable
from gateway.inference_client import InferenceClient

log = logging.getLogger(__name__)

READY = "READY"
# a model asked for and not known reads the catalog again, at most this often (a caller cannot make every
# request a read of the whole repository)
MISS_REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class DeployedModel:
    """One deployed model's default version, as its card describes it."""

    name: str
    version: str
    versions: list[str]
    task: str
    description: str
    classes: list[ClassInfo]
    intended_use: IntendedUse | None  # None: a model that routes images (the image-kind model), not a classifier
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics_ci: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # 95% intervals

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> DeployedModel:
        """From the inference service's model metadata; a ValueError (pydantic's ValidationError) for metadata
        that does not conform."""
        card = CardSummary.model_validate(metadata.get("parameters") or {})
        return cls(
            name=str(metadata["name"]),
            version=card.version,
            versions=[str(version) for version in metadata.get("versions") or []],
            task=card.task,
            description=card.description,
            classes=[ClassInfo(label=label, **card.classes[label].model_dump()) for label in card.labels],
            intended_use=card.intended_use,
            metrics=card.metrics,
            metrics_ci=card.metrics_ci,
        )


class ModelCatalog:
    """The deployed models by name, read from the inference service and cached (thread-safe)."""

    def __init__(
        self, inference: InferenceClient, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inference = inference
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._models: dict[str, DeployedModel] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def models(self) -> dict[str, DeployedModel]:
        """Every deployed model that conforms, by name (read again once the cache is older than its TTL)."""
        read_at = self._read_at
        if read_at is None or self.clock() - read_at >= self.ttl_seconds:
            self._refresh(read_at)
        return self._models

    def get(self, name: str) -> DeployedModel:
        """The model of that name; read again when it is not known (a model deployed since); `NotFound` if absent."""
        model = self.models().get(name)
        read_at = self._read_at
        if model is None and read_at is not None and self.clock() - read_at >= MISS_REFRESH_SECONDS:
            self._refresh(read_at)
            model = self._models.get(name)
        if model is None:
            raise NotFound("unknown_model", f"the model '{name}' is not deployed")
        return model

    def invalidate(self) -> None:
        """Read the models again on the next call (a model the service no longer has was asked for)."""
        self._read_at = None

    def _refresh(self, seen_read_at: float | None) -> None:
        with self._lock:
            if self._read_at is not None and self._read_at != seen_read_at:
                return  # another request read the catalog while this one waited
            try:
                self._models = self._read()
            except Unavailable:
                if self._read_at is None and not self._models:
                    raise
                log.warning("the model catalog could not be read again; the models read before are kept")
                return
            self._read_at = self.clock()

    def _read(self) -> dict[str, DeployedModel]:
        names = sorted({str(entry["name"]) for entry in self.inference.repository_index() if entry["state"] == READY})
        models = {}
        for name in names:
            try:
                models[name] = DeployedModel.from_metadata(self.inference.model_metadata(name))
            except NotFound:
                continue  # unloaded meanwhile
            except (KeyError, TypeError, ValueError) as exc:  # a ValidationError is a ValueError
                log.error("the card of model %s cannot be read; no image is sent to it: %s", name, exc)
        return models
