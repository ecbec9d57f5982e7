"""Problems the fuzzing found, pinned down as plain tests."""

import httpx
import jsonschema
import pytest

from support import REPOSITORY_TOKEN


@pytest.mark.parametrize(
    "query",
    [
        {"page": "908397565175762415255552"},  # was 503 database_unavailable: the offset overflows bigint
        {"offset": str(2**63)},
        {"label": "a\x00b"},  # was 503: PostgreSQL text cannot hold NUL
    ],
)
def test_values_the_database_refuses_are_invalid_requests_not_an_outage(admin_client, query):
    response = admin_client.get("/results", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


def test_nul_in_an_audit_filter_is_an_invalid_request(admin_client):
    response = admin_client.get("/audit", params={"action": "a\x00b"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_422_answers_match_their_documented_schema(admin_client):
    schema = admin_client.get("/openapi.json").json()
    response = admin_client.get("/results", params={"limit": "0"})
    assert response.status_code == 422
    jsonschema.validate(response.json(), schema["components"]["schemas"]["HTTPValidationError"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v2/models/{name}"),
        ("get", "/v2/models/{name}/ready"),
        ("post", "/v2/models/{name}/classify"),
        ("post", "/v2/repository/models/{name}/load"),
        ("post", "/v2/repository/models/{name}/unload"),
    ],
)
def test_inference_documents_404_for_an_unknown_model(inference_url, method, path):
    """These answered an undocumented 404 (e.g. GET /v2/models/0/ready)."""
    schema = httpx.get(f"{inference_url}/openapi.json").json()
    headers = {"Authorization": f"Bearer {REPOSITORY_TOKEN}"}  # the repository calls need it
    response = httpx.request(method, inference_url + path.format(name="no-such-model"), headers=headers)
    assert response.status_code == 404
    documented = schema["paths"][path][method]["responses"]["404"]["content"]["application/json"]["schema"]
    error_schema = schema["components"]["schemas"][documented["$ref"].rsplit("/", 1)[1]]
    jsonschema.validate(response.json(), error_schema)


def test_a_body_that_cannot_be_parsed_gets_the_documented_400(admin_client):
    """Was an undocumented 400 (POST /users with the body b'\\xff{')."""
    response = admin_client.post("/users", content=b"\xff{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    documented = admin_client.get("/openapi.json").json()["paths"]["/users"]["post"]["responses"]
    assert "400" in documented


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/users", {"username": "no-such-organisation-user", "password": "long-enough-password-1", "role": "clinician"}),
        ("/clients", {"name": "no-such-organisation-client"}),
    ],
)
def test_an_unknown_organisation_gets_the_documented_404(admin_client, path, body):
    """Was an undocumented 404 organisation_not_found (POST /users and /clients with a random organisation_id)."""
    unknown = "72d2acb6-48a9-51e8-9316-da28eab362e5"
    response = admin_client.post(path, json=body | {"organisation_id": unknown})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "organisation_not_found"
    documented = admin_client.get("/openapi.json").json()["paths"][path]["post"]["responses"]
    assert "404" in documented
