"""The gateway's client of the inference service (its image call, over HTTP)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import httpx

from gateway.settings import Settings


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OodCheck:
    """The model's out-of-distribution guard: `flagged` when the image is unlike its training data."""

    method: str
    score: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class Explanation:
    """A class-activation heatmap: rows top to bottom, values 0..1, over `region` of the original image."""

    method: str
    class_name: str
    region: str  # "center_square" (the largest centred square) or "none" (the whole image)
    heatmap: list[list[float]]


@dataclass(frozen=True)
class Prediction:
    model_name: str
    model_version: str
    label: str
    probabilities: dict[str, float]
    threshold: float | None
    # None for models whose card has no calibration, OOD guard or explanation
    calibration_temperature: float | None = None
    ood: OodCheck | None = None
    explanation: Explanation | None = None


class InferenceUnavailable(Exception):
    pass


class InferenceRejected(Exception):
    """The inference service refused the input (it is not an image it can read, or no such model)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


READINESS_TIMEOUT_SECONDS = 2.0  # well inside an orchestrator's probe timeout


# Idle connections are dropped before the inference server's keep-alive timeout (uvicorn: 5 s, httpx's
# own default too): reusing one the server is closing at that moment failed a request under load now and then.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=2.0)


class InferenceClient:
    def __init__(self, settings: Settings):
        self.client = httpx.Client(
            base_url=settings.inference_url, timeout=settings.inference_timeout_seconds, limits=_LIMITS
        )

    def classify(self, image: bytes, content_type: str, model: str, request_id: str | None = None) -> Prediction:
        headers = {"Content-Type": content_type} | ({"X-Request-ID": request_id} if request_id else {})
        try:
            response = self.client.post(f"/v2/models/{model}/classify", content=image, headers=headers)
        except httpx.HTTPError as exc:
            raise InferenceUnavailable(f"the inference service cannot be reached: {exc}") from exc
        if response.status_code >= 500:
            raise InferenceUnavailable(f"the inference service answered {response.status_code}")
        body = _json_or_empty(response)
        if response.status_code >= 400:
            code = body.get("code") or ("unknown_model" if response.status_code == 404 else "invalid_image")
            raise InferenceRejected(response.status_code, code, body.get("error", response.text))
        return Prediction(
            model_name=body["model_name"],
            model_version=body["model_version"],
            label=body["label"],
            probabilities=body["probabilities"],
            threshold=body.get("threshold"),
            calibration_temperature=_calibration_temperature(body.get("calibration")),
            ood=_ood_check(body.get("ood")),
            explanation=_explanation(body.get("explanation")),
        )

    def ready(self) -> bool:
        try:
            return self.client.get("/v2/health/ready", timeout=READINESS_TIMEOUT_SECONDS).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.client.close()


def _json_or_empty(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# The extra fields are optional: a field that is absent, null or malformed is treated as absent
# (and logged), so an older or misbehaving model never turns a classification into an error.


def _calibration_temperature(calibration) -> float | None:
    if not isinstance(calibration, dict) or calibration.get("method") != "temperature":
        return None
    temperature = calibration.get("temperature")
    return float(temperature) if _is_number(temperature) else None


def _ood_check(ood) -> OodCheck | None:
    if not isinstance(ood, dict):
        return None
    if not (_is_number(ood.get("score")) and _is_number(ood.get("threshold")) and isinstance(ood.get("flagged"), bool)):
        log.warning("ignoring a malformed ood answer from the inference service")
        return None
    return OodCheck(str(ood.get("method", "")), float(ood["score"]), float(ood["threshold"]), ood["flagged"])


def _explanation(explanation) -> Explanation | None:
    if not isinstance(explanation, dict):
        return None
    heatmap, region = explanation.get("heatmap"), explanation.get("region")
    if region not in ("center_square", "none") or not _is_grid(heatmap):
        log.warning("ignoring a malformed explanation from the inference service")
        return None
    return Explanation(str(explanation.get("method", "")), str(explanation.get("class", "")), region, heatmap)


def _is_grid(heatmap) -> bool:
    """A non-empty rectangular list of rows of finite numbers."""
    if not isinstance(heatmap, list) or not heatmap or not all(isinstance(row, list) for row in heatmap):
        return False
    width = len(heatmap[0])
    return width > 0 and all(len(row) == width and all(_is_number(v) for v in row) for row in heatmap)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
