"""The gateway's client of the inference service (its image call, over HTTP).

urllib3 rather than httpx: an image call costs half the CPU time on urllib3's pooled connections, and one
is made for every classification.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import urllib3
from pydantic import ValidationError
from urllib3.exceptions import HTTPError, ProtocolError

from cxr_model.answer import Classification, RoutedClassification
from gateway.exceptions import InvalidInput, NotFound, Unavailable
from gateway.settings import Settings

log = logging.getLogger(__name__)

Answer = TypeVar("Answer", Classification, RoutedClassification)

READINESS_TIMEOUT_SECONDS = 2.0  # well inside an orchestrator's probe timeout
INFERENCE_UNAVAILABLE = "inference_unavailable"
_CONNECTIONS = 20  # kept open; more are opened (and closed) under higher load


# A refused connection is tried once more; an error after the request went out is raised to `_request`.
_RETRY = urllib3.Retry(total=1, connect=1, read=False, status=0, other=0, redirect=0)


class InferenceClient:
    def __init__(self, settings: Settings):
        self.base_url = settings.inference_url.rstrip("/")
        self.timeout = urllib3.Timeout(
            connect=settings.inference_timeout_seconds, read=settings.inference_timeout_seconds
        )
        self.pool = urllib3.PoolManager(maxsize=_CONNECTIONS, retries=_RETRY, timeout=self.timeout)
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
        response = self._send("POST", path, body=image, headers=headers, params=params)
        try:
            return answer.model_validate_json(response.data)
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
            return orjson.loads(response.data)
        except orjson.JSONDecodeError as exc:
            raise Unavailable(INFERENCE_UNAVAILABLE, f"the inference service answered {path} with no JSON") from exc

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
        timeout: urllib3.Timeout | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """The service's 2xx answer; `Unavailable` when it cannot be reached or fails, its refusal for a 4xx."""
        url = f"{self.base_url}{path}" + (f"?{urlencode(params)}" if params else "")
        try:
            response = self._request(method, url, body, headers, timeout or self.timeout)
        except HTTPError as exc:
            raise Unavailable(INFERENCE_UNAVAILABLE, f"the inference service cannot be reached: {exc}") from exc
        if response.status >= 500:
            raise Unavailable(INFERENCE_UNAVAILABLE, f"the inference service answered {response.status}")
        if response.status >= 400:
            raise _refusal(response)
        return response

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str] | None, timeout: urllib3.Timeout
    ) -> urllib3.BaseHTTPResponse:
        """A call that met a kept-alive connection the server had just closed is sent once more, on a new one
        (the calls are stateless); one that timed out is not: the caller has waited long enough."""
        try:
            return self.pool.request(method, url, body=body, headers=headers, timeout=timeout)
        except ProtocolError:
            return self.pool.request(method, url, body=body, headers=headers, timeout=timeout)

    def ready(self) -> bool:
        try:
            timeout = urllib3.Timeout(total=READINESS_TIMEOUT_SECONDS)
            return self._send("GET", "/v2/health/ready", timeout=timeout).status == 200
        except (Unavailable, NotFound, InvalidInput):
            return False

    def close(self) -> None:
        self.pool.clear()


def _refusal(response: urllib3.BaseHTTPResponse) -> NotFound | InvalidInput:
    """The service's refusal: an unknown model, or an image it cannot read (`{"error", "code"}`)."""
    try:
        body = orjson.loads(response.data)
    except orjson.JSONDecodeError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = str(body.get("error") or response.data.decode(errors="replace"))
    if response.status == 404:
        return NotFound(str(body.get("code") or "unknown_model"), message)
    return InvalidInput(str(body.get("code") or "invalid_image"), message)
