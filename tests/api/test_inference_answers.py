"""The inference service's answer is read as the shared contract (`cxr_model.answer.Classification`):
an answer that does not conform is the inference service failing, never a result with parts left out."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class _AnsweringProxy(BaseHTTPRequestHandler):
    """Passes every request on to the real inference service, but answers a routed call with its own routed
    answer (`server.routed`) beside the real image-kind answer."""

    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {
            name: value for name, value in self.headers.items() if name.lower() not in ("host", "content-length")
        }
        answer = httpx.request(
            self.command, self.server.upstream + self.path, content=body, headers=headers, timeout=30
        )
        content = answer.content
        if self.path.split("?")[0].endswith("/route"):
            routing = json.dumps(answer.json()["routing"]).encode()
            content = b'{"routing": ' + routing + b', "routed": ' + self.server.routed + b"}"
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def answering(app_client):
    """Points the app's inference client at an HTTP server in front of the real inference service whose routed
    answer (the model an image goes to) is the bytes given; the rest (the image-kind model's answer, the model
    cards) is the real service's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnsweringProxy)
    server.upstream = app_client.app.state.settings.inference_url
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = app_client.app.state.inference_client
    real_url, client.base_url = client.base_url, f"http://127.0.0.1:{server.server_port}"

    def answer(body: bytes) -> None:
        server.routed = body

    yield answer
    client.base_url = real_url
    server.shutdown()
    server.server_close()


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
    app_client, answering, database, s3_server, sample_xrays, caplog, answer
):
    answering(json.dumps(answer).encode())
    before = stored_counts(database, s3_server)

    with caplog.at_level(logging.ERROR, logger="gateway.inference_client"):
        response = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "inference_unavailable" and int(response.headers["retry-after"]) > 0
    assert any("malformed classification" in record.getMessage() for record in caplog.records)
    assert stored_counts(database, s3_server) == before


def test_an_answer_that_is_not_json_is_a_503(app_client, answering, sample_xrays):
    answering(b"<html>proxy error</html>")
    response = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    assert response.status_code == 503 and response.json()["code"] == "inference_unavailable"


def test_a_conforming_answer_is_stored_and_served_whole(app_client, answering, sample_xrays, database):
    answering(json.dumps(ANSWER).encode())

    result = app_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()

    stored = database.execute("SELECT classification FROM results WHERE id = %s", (result["id"],)).fetchone()[0]
    database.commit()
    assert stored == ANSWER | {"followups": []}  # no model follows this one
    link = {"method": "CAM", "class": "normal", "heatmap_url": f"/results/{result['id']}/heatmap"}
    assert {key: result[key] for key in ANSWER} == ANSWER | {"explanation": link}  # the grid stays in the row
    assert app_client.get(f"/results/{result['id']}").json() == {k: v for k, v in result.items() if k != "timings"}
