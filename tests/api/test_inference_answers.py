"""The inference service's answer is read as the shared contract (`cxr_model.answer.Classification`):
an answer that does not conform is the inference service failing, never a result with parts left out."""

import json
import logging
from pathlib import Path

import httpx
import pytest
from support import stored_counts

from cxr_model.card import ModelCard

# the stored answer stands beside real ones in the shared history (the browser tests read it): the committed
# pediatric model's own version, task and words
CARD = ModelCard.read(Path(__file__).resolve().parents[2] / "models" / "pneumonia-xray" / "2")
CLASSES = [{"label": label, **CARD.describe(label).model_dump()} for label in CARD.labels]
ANSWER = {
    "model_name": CARD.name,
    "model_version": CARD.version,
    "task": CARD.task,
    "classes": CLASSES,
    "label": "normal",
    "probabilities": {"normal": 0.8, "pneumonia": 0.2},
    "positive_class": "pneumonia",
    "threshold": 0.5,
    "calibration": {"method": "temperature", "temperature": 1.5},
    "ood": {"method": "mahalanobis", "score": 3.0, "threshold": 10.0, "flagged": False},
    "explanation": {"method": "CAM", "class": "normal", "region": "center_square", "heatmap": [[0.0, 1.0]]},
}


def answering(app_client, body: bytes) -> None:
    """The app's inference client, with `body` as the answer of the model an image is routed to; the rest (the
    image-kind model's answer, the model cards) is asked of the real inference service."""
    real = httpx.Client(base_url=app_client.app.state.settings.inference_url, timeout=30)

    def handle(request: httpx.Request) -> httpx.Response:
        answer = real.request(
            request.method,
            request.url.path,
            params=request.url.params,
            content=request.content,
            headers=request.headers,
        )
        if request.url.path.endswith("/route"):
            routing = json.dumps(answer.json()["routing"]).encode()
            return httpx.Response(200, content=b'{"routing": ' + routing + b', "routed": ' + body + b"}")
        content_type = answer.headers.get("content-type", "application/json")
        return httpx.Response(answer.status_code, content=answer.content, headers={"content-type": content_type})

    app_client.app.state.inference_client.close()
    transport = httpx.MockTransport(handle)
    app_client.app.state.inference_client.client = httpx.Client(base_url="http://inference", transport=transport)


@pytest.mark.parametrize(
    "answer",
    [
        ANSWER | {"ood": {"method": "mahalanobis", "score": 3.0, "threshold": 10.0}},
        ANSWER | {"explanation": {"method": "CAM", "class": "normal", "region": "center_square", "heatmap": []}},
        ANSWER | {"explanation": {"method": "CAM", "class": "normal", "region": "elsewhere", "heatmap": [[1.0]]}},
        ANSWER | {"calibration": {"method": "temperature", "temperature": -1}},
        {key: value for key, value in ANSWER.items() if key != "probabilities"},
        ANSWER | {"classes": CLASSES[:1]},
    ],
    ids=["ood-without-flag", "empty-heatmap", "unknown-region", "negative-temperature", "no-probabilities", "1-class"],
)
def test_a_malformed_answer_is_a_503_logged_and_nothing_is_stored(
    app_client, database, s3_server, sample_xrays, caplog, answer
):
    answering(app_client, json.dumps(answer).encode())
    before = stored_counts(database, s3_server)

    with caplog.at_level(logging.ERROR, logger="gateway.inference_client"):
        response = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "inference_unavailable" and int(response.headers["retry-after"]) > 0
    assert any("malformed classification" in record.getMessage() for record in caplog.records)
    assert stored_counts(database, s3_server) == before


def test_an_answer_that_is_not_json_is_a_503(app_client, sample_xrays):
    answering(app_client, b"<html>proxy error</html>")
    response = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    assert response.status_code == 503 and response.json()["code"] == "inference_unavailable"


def test_a_conforming_answer_is_stored_and_served_whole(app_client, sample_xrays, database):
    answering(app_client, json.dumps(ANSWER).encode())

    result = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()

    stored = database.execute("SELECT classification FROM results WHERE id = %s", (result["id"],)).fetchone()[0]
    database.commit()
    assert stored == ANSWER | {"followups": []}  # no model follows this one
    link = {"method": "CAM", "class": "normal", "heatmap_url": f"/results/{result['id']}/heatmap"}
    assert {key: result[key] for key in ANSWER} == ANSWER | {"explanation": link}  # the grid stays in the row
    assert app_client.get(f"/results/{result['id']}").json() == {k: v for k, v in result.items() if k != "timings"}
