"""Hostile uploads against the real gateway: each gets its stated answer, fast, and a refused one stores nothing.

The corpus and each entry's expected answer come from scripts/make_hostile_corpus.py.
"""

import time

import httpx
import pytest
from make_hostile_corpus import DATA_DIR, generate  # scripts/ is on sys.path (tests/conftest.py)
from support import stored_counts

MAX_SECONDS = 2.0  # the slowest entry takes ~0.3 s; decoding all frames of the 1000-frame DICOM took ~4 s
CORPUS = generate() if DATA_DIR.is_dir() else []  # no data: the parametrized tests are skipped


def post(client: httpx.Client, entry) -> httpx.Response:
    if entry.request_content_type is None:
        return client.post("/classify", files={"file": (entry.name, entry.data, "application/octet-stream")})
    return client.post("/classify", content=entry.data, headers={"Content-Type": entry.request_content_type})


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_hostile_upload_gets_its_expected_answer(admin_client, database, s3_server, entry):
    before = stored_counts(database, s3_server)
    started = time.monotonic()
    response = post(admin_client, entry)
    elapsed = time.monotonic() - started

    assert response.status_code in entry.expected_statuses, response.text
    assert elapsed < MAX_SECONDS, f"answered in {elapsed:.1f} s"
    after = stored_counts(database, s3_server)
    if entry.expected_code is None:
        assert after == (before[0] + 1, before[1] + 1, before[2] + 1)
        return
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == entry.expected_code, response.text
    assert after == before


FILES = [entry for entry in CORPUS if entry.request_content_type is None]


@pytest.mark.parametrize("entry", FILES, ids=[entry.name for entry in FILES])
def test_inference_answers_hostile_files_directly_without_failing(inference_url, entry):
    """The inference service is reachable on its own too: it must refuse (4xx with a code), never fail."""
    started = time.monotonic()
    response = httpx.post(f"{inference_url}/v2/models/pneumonia-xray/classify", content=entry.data, timeout=30)
    elapsed = time.monotonic() - started

    assert response.status_code < 500, response.text
    assert elapsed < MAX_SECONDS, f"answered in {elapsed:.1f} s"
    if response.status_code >= 400:
        assert response.json()["code"], response.text


def test_services_are_still_ready_after_the_corpus(gateway, inference_url):
    # the last test of the file: it runs after both corpora
    assert httpx.get(f"{gateway.url}/health/ready", timeout=5).status_code == 200
    assert httpx.get(f"{inference_url}/v2/health/ready", timeout=5).status_code == 200
