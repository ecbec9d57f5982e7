"""The image call's trust fields (calibrated probabilities, OOD flag, CAM heatmap), real model and service."""

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from support import blank_png, noise_png
from test_repository import COMMITTED_MODEL, COMMITTED_VERSION

from cxr_model.card import ModelCard

MODEL = "pneumonia-xray"
CLASSIFY = f"/v2/models/{MODEL}/classify"


@pytest.fixture(scope="module")
def client(inference_url):
    with httpx.Client(base_url=inference_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.read(COMMITTED_MODEL)


def classify(client: httpx.Client, image: bytes, path: str = CLASSIFY) -> dict:
    response = client.post(path, content=image)
    assert response.status_code == 200, response.text
    return response.json()


def raw_outputs(client: httpx.Client, image: bytes) -> dict[str, np.ndarray]:
    """The graph's own tensors for one image file, through the protocol-level /infer (BYTES input)."""
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "base64"}}
    request = {"inputs": [tensor | {"data": [base64.b64encode(image).decode()]}]}
    response = client.post(f"/v2/models/{MODEL}/infer", json=request)
    assert response.status_code == 200, response.text
    return {
        output["name"]: np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])
        for output in response.json()["outputs"]
    }


def test_the_committed_card_declares_all_three(card):
    assert card.calibration is not None and card.calibration.temperature > 0
    assert card.explanation is not None and card.ood is not None
    assert [spec.name for spec in card.outputs] == ["probabilities", card.explanation.output, card.ood.output]


def test_metadata_lists_the_extra_outputs(client, card):
    metadata = client.get(f"/v2/models/{MODEL}").json()
    height, width = card.explanation.shape
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "class_activation", "datatype": "FP32", "shape": [-1, 2, height, width]},
        {"name": "ood_score", "datatype": "FP32", "shape": [-1]},
    ]
    assert metadata["parameters"]["calibration"]["temperature"] == card.calibration.temperature
    assert metadata["parameters"]["ood"]["threshold"] == card.ood.threshold


def test_probabilities_are_calibrated_with_the_cards_temperature(client, card, sample_xrays):
    for path in sample_xrays["normal"][:3] + sample_xrays["pneumonia"][:3]:
        image = path.read_bytes()
        body = classify(client, image)
        raw = raw_outputs(client, image)["probabilities"][0]
        temperature = card.calibration.temperature
        logits = np.log(raw) / temperature
        expected = np.exp(logits) / np.exp(logits).sum()
        served = np.array([body["probabilities"][label] for label in card.labels])
        np.testing.assert_allclose(served, expected, atol=1e-6)
        assert body["calibration"] == {"method": "temperature", "temperature": temperature}
        decided = "pneumonia" if body["probabilities"]["pneumonia"] >= card.decision.threshold else "normal"
        assert body["label"] == decided


def test_blank_and_noise_images_are_flagged_and_xrays_are_not(client, card, sample_xrays):
    for image in (blank_png(), noise_png()):
        ood = classify(client, image)["ood"]
        assert ood["flagged"] is True and ood["score"] > ood["threshold"] == card.ood.threshold
    xrays = [path.read_bytes() for paths in sample_xrays.values() for path in paths]
    flagged = [classify(client, image)["ood"]["flagged"] for image in xrays]
    assert len(flagged) == 55 and sum(flagged) <= 0.2 * len(flagged)


def test_the_heatmap_explains_the_decided_label(client, card, sample_xrays):
    image = sample_xrays["pneumonia"][0].read_bytes()
    body = classify(client, image)
    explanation = body["explanation"]
    assert explanation["method"] == "CAM" and explanation["region"] == "center_square"
    assert explanation["class"] == body["label"]
    heatmap = np.asarray(explanation["heatmap"])
    assert heatmap.shape == tuple(card.explanation.shape)
    assert heatmap.min() == 0.0 and heatmap.max() == 1.0
    raw = raw_outputs(client, image)["class_activation"][0, card.labels.index(body["label"])]
    np.testing.assert_allclose(heatmap, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_concurrent_calls_batch_and_each_gets_its_own_answer(client, sample_xrays):
    images = [path.read_bytes() for path in sample_xrays["pneumonia"][:8] + sample_xrays["normal"][:8]]
    one_by_one = [classify(client, image) for image in images]
    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(lambda image: classify(client, image), images))
    for alone, batched in zip(one_by_one, together, strict=True):
        assert batched["label"] == alone["label"]
        assert batched["ood"]["score"] == pytest.approx(alone["ood"]["score"], rel=1e-5)
        np.testing.assert_allclose(batched["explanation"]["heatmap"], alone["explanation"]["heatmap"], atol=1e-5)


def test_a_model_without_the_card_sections_answers_as_before(start_inference, tmp_path, sample_xrays):
    target = tmp_path / "repository" / MODEL / COMMITTED_VERSION
    shutil.copytree(COMMITTED_MODEL, target)
    card = json.loads((target / "model.json").read_text())
    for section in ("calibration", "explanation", "ood"):
        card.pop(section)
    (target / "model.json").write_text(json.dumps(card))
    with httpx.Client(base_url=start_inference({"INFERENCE_MODEL_REPOSITORY": str(tmp_path / "repository")})) as plain:
        image = sample_xrays["pneumonia"][0].read_bytes()
        body = classify(plain, image)
        assert body["calibration"] is None and body["ood"] is None and body["explanation"] is None
        raw = raw_outputs(plain, image)["probabilities"][0]
        served = [body["probabilities"]["normal"], body["probabilities"]["pneumonia"]]
        np.testing.assert_allclose(served, raw, atol=1e-6)
