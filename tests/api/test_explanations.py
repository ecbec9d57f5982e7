"""Calibrated probabilities, the out-of-distribution flag and explanation heatmaps through the gateway:
the real inference service with the committed model, real Postgres, the S3 server over HTTP.

The heatmap is kept in the result row and drawn as a PNG overlay when it is asked for, so a
result has exactly one stored object: its image."""

import io
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.heatmap import OVERLAY_LONG_SIDE, overlay_size, render_overlay
from support import (
    MODEL_REPOSITORY,
    bearer_client,
    blank_png,
    client_credentials_token,
    latest_model_version,
    new_api_client,
    noise_png,
    png_image,
    stored_counts,
)


# An adult's chest X-ray from another hospital (NIH ChestX-ray14): it passes the intended-use gate (a chest
# X-ray, no DICOM header to tell the age) and the pediatric model's out-of-distribution guard flags it.
UNUSUAL_XRAY = Path("adult-cxr") / "nih" / "normal" / "00001308_002.png"


@pytest.fixture(scope="module")
def unusual_xray(data_dir) -> bytes:
    return (data_dir / UNUSUAL_XRAY).read_bytes()


# the samples are the pediatric hospital's X-rays: named, they go to its model (without an age, to the adult one)
PEDIATRIC = {"model": "pneumonia-xray"}


def classify(client, data: bytes, name: str = "upload.png") -> dict:
    response = client.post("/classify", files={"file": (name, data)}, data=PEDIATRIC)
    assert response.status_code == 201, response.text
    return response.json()


def stored_row(database, result_id: str) -> dict:
    """What the rows hold of one result: its image's object key and size, the heatmap and its region."""
    row = database.execute(
        "SELECT i.object_key, i.width, i.height, r.classification -> 'explanation' ->> 'region',"
        " r.classification -> 'explanation' -> 'heatmap' FROM results r JOIN images i ON i.id = r.image_id"
        " WHERE r.id = %s",
        (result_id,),
    ).fetchone()
    database.commit()
    return dict(zip(("object_key", "width", "height", "region", "heatmap"), row, strict=True))


def objects_of(s3_server, object_key: str) -> list[str]:
    """The stored objects named after one image (its uuid)."""
    stem = object_key.rsplit(".", 1)[0]
    return [key for key in s3_server.keys() if key.startswith(stem)]


def heatmap_png(client, result: dict) -> Image.Image:
    response = client.get(result["explanation"]["heatmap_url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def widened(path) -> Image.Image:
    """The X-ray with black bands left and right: its centre square, which the model sees, is the X-ray itself."""
    xray = Image.open(path).convert("L")
    wide = Image.new("L", (xray.width * 3 // 2, xray.height))
    wide.paste(xray, ((wide.width - xray.width) // 2, 0))
    return wide


def test_a_sample_xray_is_calibrated_explained_and_not_flagged(admin_client, sample_xrays, database, s3_server):
    wide = widened(sample_xrays["pneumonia"][0])

    result = classify(admin_client, png_image(np.asarray(wide)))

    ood = result["ood"]
    assert ood["flagged"] is False and ood["method"] == "mahalanobis" and ood["score"] <= ood["threshold"]
    assert result["calibration"]["method"] == "temperature" and result["calibration"]["temperature"] > 0
    assert result["explanation"] == {
        "method": "CAM",
        "class": result["explanation"]["class"],
        "heatmap_url": f"/results/{result['id']}/heatmap",
    }
    assert result["explanation"]["class"] in result["probabilities"]
    row = stored_row(database, result["id"])
    assert (row["width"], row["height"]) == wide.size and row["region"] == "center_square"
    heatmap = np.asarray(row["heatmap"])
    assert heatmap.shape == (7, 7) and heatmap.min() == 0.0 and heatmap.max() == 1.0
    assert objects_of(s3_server, row["object_key"]) == [row["object_key"]]  # the image, and nothing beside it

    overlay = heatmap_png(admin_client, result)
    assert overlay.mode == "RGBA" and overlay.size == overlay_size(*wide.size) == (OVERLAY_LONG_SIDE, 341)
    alpha = np.asarray(overlay)[:, :, 3]
    left, right = (OVERLAY_LONG_SIDE - 341) // 2, (OVERLAY_LONG_SIDE + 341) // 2  # the X-ray in the overlay
    assert alpha[:, left:right].max() > 0  # the model looked somewhere in it
    assert alpha[:, : left - 1].max() == 0 and alpha[:, right + 1 :].max() == 0  # and nowhere in the bands
    assert admin_client.get(f"/results/{result['id']}").json()["explanation"] == result["explanation"]
    drawn = render_overlay(row["heatmap"], row["region"], *wide.size)
    assert np.array_equal(np.asarray(overlay), np.asarray(Image.open(io.BytesIO(drawn))))


@pytest.mark.parametrize("make_image", [blank_png, noise_png], ids=["blank", "noise"])
def test_images_unlike_chest_xrays_are_refused_before_the_model_runs(admin_client, make_image, database, s3_server):
    """They were classified and flagged as unusual before the intended-use gate; now no model sees them."""
    before = stored_counts(database, s3_server)
    response = admin_client.post("/classify", files={"file": ("upload.png", make_image())})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unsupported_image_kind" and response.json()["image_kind"]["label"] == "other"
    assert stored_counts(database, s3_server) == before


def test_a_chest_xray_unlike_the_training_images_is_flagged(admin_client, unusual_xray):
    result = classify(admin_client, unusual_xray)

    assert result["image_kind"]["label"] == "chest_xray" and result["warnings"] == []
    assert result["ood"]["flagged"] is True and result["ood"]["score"] > result["ood"]["threshold"]
    assert admin_client.get(f"/results/{result['id']}").json()["ood"] == result["ood"]
    assert heatmap_png(admin_client, result).size == (OVERLAY_LONG_SIDE, OVERLAY_LONG_SIDE)


def test_results_filter_by_the_ood_flag(service_client, sample_xrays, unusual_xray):
    flagged = classify(service_client, unusual_xray)
    typical = classify(service_client, sample_xrays["normal"][0].read_bytes(), "x.jpg")

    only_flagged = service_client.get("/results", params={"ood": "true"}).json()
    only_typical = service_client.get("/results", params={"ood": "false"}).json()

    assert [item["id"] for item in only_flagged["items"]] == [flagged["id"]] and only_flagged["total"] == 1
    assert [item["id"] for item in only_typical["items"]] == [typical["id"]] and only_typical["total"] == 1
    bad = service_client.get("/results", params={"ood": "maybe"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_the_heatmap_has_the_access_rules_and_audit_of_the_image(gateway, admin_client, service_client, sample_xrays):
    result = classify(service_client, sample_xrays["normal"][0].read_bytes(), "x.jpg")
    heatmap_png(service_client, result)

    other = new_api_client(admin_client)
    token = client_credentials_token(gateway.url, other["client_id"], other["client_secret"])
    with bearer_client(gateway.url, token) as other_client:
        response = other_client.get(result["explanation"]["heatmap_url"])
    assert response.status_code == 404 and response.json()["code"] == "result_not_found"
    events = admin_client.get("/audit", params={"action": "result.heatmap_view", "limit": 200}).json()["items"]
    target = f"result:{result['id']}"
    outcomes = {(event["actor_name"], event["outcome"]) for event in events if event["target"] == target}
    assert outcomes == {(service_client.api_client["name"], "success"), (other["name"], "failure")}
    assert httpx.get(f"{gateway.url}{result['explanation']['heatmap_url']}").status_code == 401


def test_deleting_a_result_removes_its_image_and_heatmap(admin_client, sample_xrays, database, s3_server):
    result = classify(admin_client, sample_xrays["normal"][1].read_bytes(), "x.jpg")
    image_key = stored_row(database, result["id"])["object_key"]
    assert objects_of(s3_server, image_key) == [image_key]

    assert admin_client.delete(f"/results/{result['id']}").status_code == 204

    assert objects_of(s3_server, image_key) == []
    response = admin_client.get(result["explanation"]["heatmap_url"])
    assert response.status_code == 404 and response.json()["code"] == "result_not_found"


# The overlay itself, for images of any shape (no services needed).


def test_the_overlay_covers_the_centre_square_of_a_wide_image_and_nothing_else():
    heatmap = [[0.0, 1.0], [0.5, 0.25]]

    overlay = np.asarray(Image.open(io.BytesIO(render_overlay(heatmap, "center_square", 1000, 600))))

    assert overlay.shape == (307, 512, 4)
    square = overlay[:, 102:410]  # x 200..800 of the image, scaled by 0.512
    assert overlay[:, :102, 3].max() == 0 and overlay[:, 410:, 3].max() == 0
    assert square[0, -1].tolist() == [255, 0, 0, 255]  # the hottest corner: red and opaque
    assert square[0, 0, 3] == 0  # a zero is transparent
    assert 0 < square[-1, 0, 3] < 255 and square[-1, 0, 3] > square[-1, -1, 3]  # alpha rises with the value


def test_an_overlay_of_the_whole_image_keeps_a_tall_aspect_ratio():
    overlay = Image.open(io.BytesIO(render_overlay([[1.0] * 3] * 3, "none", 300, 900)))

    assert overlay.size == (171, 512)
    assert np.asarray(overlay)[:, :, 3].min() == 255


@pytest.fixture
def model_without_extras(tmp_path) -> Path:
    """A model repository with the committed model, its card without calibration, OOD guard and explanation,
    as models trained before them have."""
    source = MODEL_REPOSITORY / "pneumonia-xray" / latest_model_version()
    target = tmp_path / "models" / "pneumonia-xray" / source.name
    target.mkdir(parents=True)
    shutil.copy(source / "model.onnx", target / "model.onnx")
    card = json.loads((source / "model.json").read_text())
    for extra in ("calibration", "ood", "explanation"):
        card.pop(extra, None)
    (target / "model.json").write_text(json.dumps(card))
    shutil.copytree(MODEL_REPOSITORY / "image-kind", tmp_path / "models" / "image-kind")  # the gate needs it
    return tmp_path / "models"


def test_a_model_without_the_extras_still_classifies_without_them(
    start_inference, gateway_with, model_without_extras, sample_xrays, database, s3_server
):
    old_model = start_inference({"INFERENCE_MODEL_REPOSITORY": str(model_without_extras)})
    client = gateway_with(INFERENCE_URL=old_model)
    objects = len(s3_server.keys())

    result = classify(client, sample_xrays["normal"][0].read_bytes(), "x.jpg")

    assert (result["ood"], result["calibration"], result["explanation"]) == (None,) * 3
    assert stored_row(database, result["id"])["heatmap"] is None and len(s3_server.keys()) == objects + 1
    response = client.get(f"/results/{result['id']}/heatmap")
    assert response.status_code == 404 and response.json()["code"] == "heatmap_not_found"
    assert result["id"] not in {item["id"] for item in client.get("/results", params={"ood": "false"}).json()["items"]}
