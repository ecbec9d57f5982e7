"""Idempotency-Key on POST /classify: a retry returns the first answer; another body under the key is a conflict."""

import uuid


def row_and_object_counts(database, s3_server) -> tuple[int, int]:
    rows = database.execute("SELECT count(*) FROM results").fetchone()[0]
    database.commit()
    return rows, len(s3_server.keys())


def test_a_retry_returns_the_original_result_without_storing_again(admin_client, sample_xrays, database, s3_server):
    key = uuid.uuid4().hex
    data = sample_xrays["normal"][0].read_bytes()
    first = admin_client.post("/classify", files={"file": ("x.jpg", data)}, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    counts = row_and_object_counts(database, s3_server)

    retry = admin_client.post("/classify", files={"file": ("renamed.jpg", data)}, headers={"Idempotency-Key": key})

    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    assert retry.json()["timings"] is None
    assert row_and_object_counts(database, s3_server) == counts


def test_the_same_key_with_another_body_is_a_conflict(admin_client, sample_xrays, database, s3_server):
    key = uuid.uuid4().hex
    first = sample_xrays["normal"][0].read_bytes()
    admin_client.post("/classify", files={"file": ("x.jpg", first)}, headers={"Idempotency-Key": key})
    counts = row_and_object_counts(database, s3_server)

    other = admin_client.post(
        "/classify",
        files={"file": ("x.jpg", sample_xrays["pneumonia"][0].read_bytes())},
        headers={"Idempotency-Key": key},
    )

    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert row_and_object_counts(database, s3_server) == counts


def test_keys_belong_to_their_submitter(admin_client, clinician_client, sample_xrays):
    key = uuid.uuid4().hex
    data = sample_xrays["normal"][0].read_bytes()
    mine = admin_client.post("/classify", files={"file": ("x.jpg", data)}, headers={"Idempotency-Key": key})
    theirs = clinician_client.post("/classify", files={"file": ("x.jpg", data)}, headers={"Idempotency-Key": key})
    assert theirs.status_code == 201 and theirs.json()["id"] != mine.json()["id"]


def test_concurrent_retries_store_one_result(gateway, sample_xrays, database, s3_server, admin_client):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    key = uuid.uuid4().hex
    data = sample_xrays["pneumonia"][1].read_bytes()
    counts = row_and_object_counts(database, s3_server)

    def send(_):
        headers = {"Authorization": admin_client.headers["authorization"], "Idempotency-Key": key}
        return httpx.post(f"{gateway.url}/classify", files={"file": ("x.jpg", data)}, headers=headers, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(send, range(4)))

    assert all(response.status_code in (200, 201) for response in responses), [r.text for r in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert row_and_object_counts(database, s3_server) == (counts[0] + 1, counts[1] + 1)
