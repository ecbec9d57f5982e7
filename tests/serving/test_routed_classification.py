"""One image through the image-kind model and on to the model its label is routed to, in one call
(`POST /v2/models/{name}/route`): the same answers as two separate classify calls."""

from __future__ import annotations

import httpx

from cxr_model.answer import Classification, RoutedClassification

KIND_MODEL, XRAY_MODEL = "image-kind", "pneumonia-xray"


def classify(url: str, model: str, image: bytes) -> Classification:
    response = httpx.post(f"{url}/v2/models/{model}/classify", content=image, timeout=60)
    assert response.status_code == 200, response.text
    return Classification.model_validate_json(response.content)


def route(url: str, image: bytes, routes: list[str]) -> httpx.Response:
    return httpx.post(
        f"{url}/v2/models/{KIND_MODEL}/route", params=[("to", r) for r in routes], content=image, timeout=60
    )


def test_the_routed_model_answers_as_its_own_classify_call(inference_url, sample_xrays, data_dir):
    for image in (sample_xrays["pneumonia"][0].read_bytes(), (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()):
        response = route(inference_url, image, [f"chest_xray:{XRAY_MODEL}", f"chest_ct:{XRAY_MODEL}"])
        assert response.status_code == 200, response.text
        answer = RoutedClassification.model_validate_json(response.content)
        assert answer.routing == classify(inference_url, KIND_MODEL, image)
        assert answer.routing.label == "chest_xray"
        assert answer.routed == classify(inference_url, XRAY_MODEL, image)


def test_a_label_without_a_route_gets_the_routing_answer_alone(inference_url, sample_xrays):
    image = sample_xrays["normal"][0].read_bytes()
    answer = RoutedClassification.model_validate_json(route(inference_url, image, [f"chest_ct:{XRAY_MODEL}"]).content)
    assert answer.routing.label == "chest_xray" and answer.routed is None
    assert RoutedClassification.model_validate_json(route(inference_url, image, []).content).routed is None


def test_routes_name_deployed_models_once_per_label(inference_url, sample_xrays):
    image = sample_xrays["normal"][0].read_bytes()
    unknown = route(inference_url, image, ["chest_xray:no-such-model"])
    assert unknown.status_code == 404 and "no-such-model" in unknown.json()["error"]
    for routes in (["chest_xray"], [f"chest_xray:{XRAY_MODEL}", f"chest_xray:{KIND_MODEL}"], [f":{XRAY_MODEL}"]):
        refused = route(inference_url, image, routes)
        assert refused.status_code == 400, routes
        assert "label:model" in refused.json()["error"]


def test_an_unreadable_image_is_refused_as_the_classify_call_refuses_it(inference_url):
    image = b"\xff\xd8\xff\xe0 not really a jpeg"
    refused = route(inference_url, image, [f"chest_xray:{XRAY_MODEL}"])
    alone = httpx.post(f"{inference_url}/v2/models/{KIND_MODEL}/classify", content=image, timeout=60)
    assert refused.status_code == alone.status_code == 400
    assert refused.json() == alone.json() and refused.json()["code"]
