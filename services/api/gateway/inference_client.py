"""The gateway's client of the inference service (its image call, over HTTP)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from gateway.settings import Settings


@dataclass(frozen=True)
class Prediction:
    model_name: str
    model_version: str
    label: str
    probabilities: dict[str, float]
    threshold: float | None


class InferenceUnavailable(Exception):
    pass


class InferenceRejected(Exception):
    """The inference service refused the input (it is not an image it can read, or no such model)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


READINESS_TIMEOUT_SECONDS = 2.0  # well inside an orchestrator's probe timeout


class InferenceClient:
    def __init__(self, settings: Settings):
        self.client = httpx.Client(base_url=settings.inference_url, timeout=settings.inference_timeout_seconds)

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
