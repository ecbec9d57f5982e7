"""A chest CT slice through the real gateway, inference service (the committed models), Postgres and the S3
server: the image-kind model sends it to the COVID-19 CT model, and a slice that model calls COVID-19 also
gets its severity grade from the severity model in the same request, kept in the same result row and
answered with it. The slices are real held-out images (test split) the committed models read right."""

from __future__ import annotations

from support import latest_model_version, stored_counts

# a test-split slice of a held-out severity volume (grade from labels.csv) and a Sao Paulo test-split slice
COVID_SLICE, COVID_GRADE = "covid-ct-severity/slices/1508.jpg", "mild"
NON_COVID_SLICE = "sars-cov-2-ct/non-covid/Non-Covid_613.jpg"
SEVERITY_LABELS = ["mild", "moderate", "severe"]


def classify(admin_client, data: bytes):
    return admin_client.post("/classify", files={"file": ("slice.jpg", data)})


def test_a_covid_ct_slice_gets_its_severity_grade_in_the_same_result(admin_client, database, s3_server, data_dir):
    before = stored_counts(database, s3_server)
    response = classify(admin_client, (data_dir / COVID_SLICE).read_bytes())
    body = response.json()
    assert response.status_code == 201, body
    assert body["image_kind"]["label"] == "chest_ct"
    assert (body["model_name"], body["model_version"]) == ("covid-ct", latest_model_version("covid-ct"))
    assert body["label"] == "covid" and body["explanation"]["heatmap_url"] == f"/results/{body['id']}/heatmap"
    [grade] = body["followups"]
    assert (grade["model_name"], grade["model_version"]) == (
        "covid-ct-severity",
        latest_model_version("covid-ct-severity"),
    )
    assert [item["label"] for item in grade["classes"]] == SEVERITY_LABELS and grade["label"] == COVID_GRADE
    assert abs(sum(grade["probabilities"].values()) - 1.0) < 1e-4 and grade["followups"] == []
    assert stored_counts(database, s3_server) == tuple(count + 1 for count in before)  # one image, one row, one object
    stored = admin_client.get(f"/results/{body['id']}").json()
    assert stored["followups"] == body["followups"]
    row = database.execute("SELECT classification FROM results WHERE id = %s", (body["id"],)).fetchone()[0]
    database.commit()
    assert [item["label"] for item in row["followups"]] == [COVID_GRADE]


def test_a_ct_slice_without_covid_gets_no_severity_grade(admin_client, data_dir):
    response = classify(admin_client, (data_dir / NON_COVID_SLICE).read_bytes())
    body = response.json()
    assert response.status_code == 201, body
    assert (body["image_kind"]["label"], body["model_name"], body["label"]) == ("chest_ct", "covid-ct", "non-covid")
    assert body["followups"] == []


def test_a_chest_xray_answer_has_no_follow_up(admin_client, sample_xrays):
    body = classify(admin_client, sample_xrays["pneumonia"][0].read_bytes()).json()
    assert body["image_kind"]["label"] == "chest_xray" and body["followups"] == []


def test_without_followup_models_set_a_covid_slice_gets_no_severity_grade(gateway_with, data_dir):
    client = gateway_with(FOLLOWUP_MODELS="")  # a deployment's default
    response = classify(client, (data_dir / COVID_SLICE).read_bytes())
    assert response.status_code == 201, response.text
    assert (response.json()["model_name"], response.json()["label"]) == ("covid-ct", "covid")
    assert response.json()["followups"] == []
