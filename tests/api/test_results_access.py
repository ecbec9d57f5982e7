"""Who sees which results, and deleting them (rows and stored objects)."""

from support import bearer_client, client_credentials_token, new_api_client


def classify(client, sample_xrays) -> dict:
    response = client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()


def test_service_clients_see_only_their_own_results(
    gateway, admin_client, service_client, clinician_client, sample_xrays
):
    own = classify(service_client, sample_xrays)
    assert own["created_by"] == service_client.api_client["name"]
    other_api_client = new_api_client(admin_client)
    token = client_credentials_token(gateway.url, other_api_client["client_id"], other_api_client["client_secret"])
    with bearer_client(gateway.url, token) as other:
        for path in (f"/results/{own['id']}", own["image"]["url"]):
            response = other.get(path)
            assert response.status_code == 404 and response.json()["code"] == "result_not_found"
        assert other.get("/results").json()["total"] == 0
        theirs = classify(other, sample_xrays)

    page = service_client.get("/results").json()
    assert [item["id"] for item in page["items"]] == [own["id"]] and page["total"] == 1
    assert service_client.get(own["image"]["url"]).status_code == 200
    seen_by_clinician = {item["id"] for item in clinician_client.get("/results", params={"limit": 200}).json()["items"]}
    assert {own["id"], theirs["id"]} <= seen_by_clinician


def test_admins_delete_results_with_their_image(admin_client, clinician_client, sample_xrays, database, s3_server):
    created = classify(clinician_client, sample_xrays)
    object_key = database.execute(
        "SELECT i.object_key FROM results r JOIN images i ON i.id = r.image_id WHERE r.id = %s", (created["id"],)
    ).fetchone()[0]
    database.commit()
    assert object_key in s3_server.keys()

    assert clinician_client.delete(f"/results/{created['id']}").status_code == 403
    assert admin_client.delete(f"/results/{created['id']}").status_code == 204

    assert admin_client.get(f"/results/{created['id']}").status_code == 404
    assert database.execute("SELECT count(*) FROM images WHERE object_key = %s", (object_key,)).fetchone()[0] == 0
    assert object_key not in s3_server.keys()
    assert admin_client.delete(f"/results/{created['id']}").status_code == 404


def test_results_filter_sort_and_page(gateway, admin_client, service_client, sample_xrays):
    name = service_client.api_client["name"]
    created = [classify(service_client, sample_xrays) for _ in range(3)]
    created.append(
        service_client.post("/classify", files={"file": ("p.jpg", sample_xrays["pneumonia"][0].read_bytes())}).json()
    )

    mine = admin_client.get("/results", params={"submitted_by": name, "limit": 2}).json()
    assert mine["total"] == 4 and [item["id"] for item in mine["items"]] == [c["id"] for c in created[::-1][:2]]
    second = admin_client.get("/results", params={"submitted_by": name, "limit": 2, "page": 2}).json()
    assert [item["id"] for item in second["items"]] == [c["id"] for c in created[::-1][2:]] and second["offset"] == 2

    oldest_first = admin_client.get("/results", params={"submitted_by": name, "sort": "created_at"}).json()
    assert [item["id"] for item in oldest_first["items"]] == [c["id"] for c in created]

    label = created[-1]["label"]
    by_label = admin_client.get("/results", params={"submitted_by": name, "label": label}).json()
    assert by_label["total"] == sum(c["label"] == label for c in created)
    assert all(item["label"] == label for item in by_label["items"])

    assert admin_client.get("/results", params={"submitted_by": name, "model": "knee-mri"}).json()["total"] == 0
    window = {"submitted_by": name, "since": created[1]["created_at"], "until": created[3]["created_at"]}
    assert [item["id"] for item in admin_client.get("/results", params=window).json()["items"]] == [
        created[2]["id"],
        created[1]["id"],
    ]
    assert admin_client.get("/results", params={"sort": "password"}).status_code == 422
