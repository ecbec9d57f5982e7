"""POST /classify end to end: real inference, real Postgres, real S3 server over HTTP."""

import hashlib

import pytest
from support import latest_model_version, stored_counts

from gateway.intake import stripped_jpeg


def test_classify_stores_image_and_result(admin_client, sample_xrays, database, s3_server):
    path = sample_xrays["pneumonia"][0]
    data = path.read_bytes()
    kept = stripped_jpeg(data)  # what is stored: the JPEG without its metadata segments (test_upload_hygiene.py)
    before = stored_counts(database, s3_server)

    response = admin_client.post("/classify", files={"file": (path.name, data, "application/octet-stream")})

    assert response.status_code == 201, response.text
    result = response.json()
    assert response.headers["location"] == f"/results/{result['id']}"
    assert result["label"] in ("normal", "pneumonia")
    assert set(result["probabilities"]) == {"normal", "pneumonia"}
    assert [item["label"] for item in result["classes"]] == ["normal", "pneumonia"]
    assert all(item["name"] and item["finding"] for item in result["classes"])
    assert result["positive_class"] == "pneumonia" and result["task"]
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-5
    adult = "pneumonia-xray-adult"  # a JPEG states no age: the adult model answers
    assert (result["model_name"], result["model_version"]) == (adult, latest_model_version(adult))
    assert result["created_by"] == "admin"
    assert result["image"]["content_type"] == "image/jpeg"  # from the bytes, not the declared type
    assert result["image"]["sha256"] == hashlib.sha256(kept).hexdigest()
    assert result["explanation"] is not None  # its heatmap is in the row, not another object
    assert stored_counts(database, s3_server) == (before[0] + 1, before[1] + 1, before[2] + 1)

    row = database.execute(
        "SELECT i.object_key, i.size_bytes, i.sha256, r.label, r.model_version, u.username "
        "FROM results r JOIN images i ON i.id = r.image_id JOIN users u ON u.id = r.created_by_id WHERE r.id = %s",
        (result["id"],),
    ).fetchone()
    object_key, size_bytes, sha256, label, model_version, username = row
    assert (size_bytes, sha256, label, model_version, username) == (
        len(kept),
        hashlib.sha256(kept).hexdigest(),
        result["label"],
        latest_model_version(adult),
        "admin",
    )
    assert path.stem not in object_key  # no file names (which may carry patient data) in keys
    stored = s3_server.client().get_object(Bucket=s3_server.bucket, Key=object_key)
    assert stored["Body"].read() == kept and stored["ContentType"] == "image/jpeg"


def test_results_list_detail_and_image(admin_client, sample_xrays):
    data = sample_xrays["normal"][0].read_bytes()
    created = admin_client.post("/classify", files={"file": ("x.jpg", data, "image/jpeg")}).json()

    page = admin_client.get("/results", params={"limit": 5}).json()
    assert page["items"][0]["id"] == created["id"]  # newest first
    assert page["total"] >= 1 and page["limit"] == 5

    assert created.pop("timings").keys() == {"gate_ms", "inference_ms", "storage_ms", "database_ms"}
    assert admin_client.get(f"/results/{created['id']}").json() == created
    image = admin_client.get(created["image"]["url"])
    assert image.status_code == 200 and image.content == stripped_jpeg(data)
    assert image.headers["content-type"] == "image/jpeg"


def test_png_upload_is_classified(admin_client, sample_xrays, tmp_path):
    from PIL import Image

    png_path = tmp_path / "xray.png"
    Image.open(sample_xrays["normal"][1]).save(png_path)
    response = admin_client.post("/classify", files={"file": ("xray.png", png_path.read_bytes(), "image/png")})
    assert response.status_code == 201
    assert response.json()["image"]["content_type"] == "image/png"


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"%PDF-1.7 not an x-ray", 415, "unsupported_media_type"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00" * 20, 422, "corrupt_image"),
        (b"GIF89a" + b"\x00" * 64, 415, "unsupported_media_type"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, 422, "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, 422, "corrupt_image"),
    ],
    ids=["empty", "pdf", "broken-dicom", "gif", "truncated-jpeg", "broken-png"],
)
def test_bad_uploads_get_a_problem_and_store_nothing(admin_client, database, s3_server, content, status, code):
    before = stored_counts(database, s3_server)
    response = admin_client.post("/classify", files={"file": ("scan.png", content, "image/png")})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code and response.json()["detail"]
    assert stored_counts(database, s3_server) == before


def test_missing_file_field_is_a_422_problem(admin_client):
    response = admin_client.post("/classify", data={"model": "pneumonia-xray"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_unknown_model_gets_404(admin_client, sample_xrays, database, s3_server):
    before = stored_counts(database, s3_server)
    data = sample_xrays["normal"][0].read_bytes()
    response = admin_client.post("/classify", files={"file": ("x.jpg", data)}, data={"model": "knee-mri"})
    assert response.status_code == 404 and response.json()["code"] == "unknown_model"
    assert stored_counts(database, s3_server) == before


def test_unknown_result_gets_404(admin_client):
    response = admin_client.get("/results/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404 and response.json()["code"] == "result_not_found"
    assert admin_client.get("/results/not-a-uuid").status_code == 422


def test_classify_needs_a_token(gateway, sample_xrays):
    import httpx

    response = httpx.post(f"{gateway.url}/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    assert response.status_code == 401
