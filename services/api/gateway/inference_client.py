"""The gateway's client of the inference service (its image call, over HTTP)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from cxr_model.answer import Classification, RoutedClassification
from gateway.exceptions import InvalidInput, NotFound, Unavailable
from gateway.settings import Settings

log = logging.getLogger(__name__)

Answer = TypeVar("Answer", Classification, RoutedClassification)

READINESS_TIMEOUT_SECONDS = 2.0  # well inside an orchestrator's probe timeout
INFERENCE_UNAVAILABLE = "inference_unavailable"

# Idle connections are dropped before the inference server's keep-alive timeout (uvicorn: 5 s, httpx's
# own default too): reusing one the server is closing at that moment failed a request under load now and then.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=2.0)


class InferenceClient:
    def __init__(self, settings: Settings):
        self.client = httpx.Client(
            base_url=settings.inference_url, timeout=settings.inference_timeout_seconds, limits=_LIMITS
        )
        token = settings.inference_repository_token
        self.repository_headers = {"Authorization": f"Bearer {token}"} if token else {}

    def classify(self, image: bytes, content_type: str, model: str, request_id: str | None = None) -> Classification:
        """The model's answer; `NotFound` for an unknown model, `InvalidInput` for an image it refuses,
        `Unavailable` when the service cannot be reached, fails, or answers something that is not an answer."""
        return self._image_call(Classification, f"/v2/models/{model}/classify", image, content_type, request_id)

    def route(
        self, image: bytes, content_type: str, model: str, routes: Mapping[str, str], request_id: str | None = None
    ) -> RoutedClassification:
        """`model`'s answer (the image-kind model's) and the answer of the model `routes` maps its label to, from
        one call; errors as `classify`'s."""
        path, params = f"/v2/models/{model}/route", [("to", f"{label}:{to}") for label, to in routes.items()]
        return self._image_call(RoutedClassification, path, image, content_type, request_id, params)

    def _image_call(
        self,
        answer: type[Answer],
        path: str,
        image: bytes,
        content_type: str,
        request_id: str | None,
        params: list[tuple[str, str]] | None = None,
    ) -> Answer:
        headers = {"Content-Type": content_type} | ({"X-Request-ID": request_id} if request_id else {})
        response = self._send("POST", path, content=image, headers=headers, params=params)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            log.error("the inference service answered a malformed classification: %s", exc)
            raise Unavailable(
                INFERENCE_UNAVAILABLE, "the inference service answered a malformed classification"
            ) from exc

    def repository_index(self) -> list[dict[str, Any]]:
        """Every model version the service found: `{name, version, state, reason}`."""
        return self._json("POST", "/v2/repository/index", headers=self.repository_headers)

    def model_metadata(self, name: str) -> dict[str, Any]:
        """The model's metadata (its default version); `parameters` carry its card's fields. `NotFound` when absent."""
        return self._json("GET", f"/v2/models/{name}")

    def _json(self, method: str, path: str, **request: Any) -> Any:
        response = self._send(method, path, **request)
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable(INFERENCE_UNAVAILABLE, f"the inference service answered {path} with no JSON") from exc

    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        """The service's 2xx answer; `Unavailable` when it cannot be reached or fails, its refusal for a 4xx."""
        try:
            response = self.client.request(method, path, **request)
        except httpx.HTTPError as exc:
            raise Unavailable(INFERENCE_UNAVAILABLE, f"the inference service cannot be reached: {exc}") from exc
        if response.status_code >= 500:
            raise Unavailable(INFERENCE_UNAVAILABLE, f"the inference service answered {response.status_code}")
        if response.status_code >= 400:
            raise _refusal(response)
        return response

    def ready(self) -> bool:
        try:
            return self.client.get("/v2/health/ready", timeout=READINESS_TIMEOUT_SECONDS).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.client.close()


def _refusal(response: httpx.Response) -> NotFound | InvalidInput:
    """The service's refusal: an unknown model, or an image it cannot read (`{"error", "code"}`)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = str(body.get("error") or response.text)
    if response.status_code == 404:
        return NotFound(str(body.get("code") or "unknown_model"), message)
    return InvalidInput(str(body.get("code") or "invalid_image"), message)
