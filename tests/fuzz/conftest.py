"""Fuzzing fixtures: each service's OpenAPI schema, loaded from the running service.

The gateway under fuzz is a dedicated one with rate limiting off (RATE_LIMIT_PER_MINUTE=0): its
schema does not document 429, and thousands of generated requests from one caller would hit it. Its
API docs are on (API_DOCS=true), so that its schema is public as schemathesis loads it.
"""

import pytest
import schemathesis


def load_schema(base_url: str):
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.fixture(scope="session")
def fuzz_gateway(gateway, logs_dir):
    """A gateway on the shared database, object store and inference service, without rate limits."""
    from processes import free_port, gateway_process

    port = free_port()
    service = gateway_process(
        port, gateway.env | {"RATE_LIMIT_PER_MINUTE": "0", "API_DOCS": "true"}, logs_dir / "gateway-fuzz.log"
    ).start()
    yield f"http://127.0.0.1:{port}"
    service.stop()


@pytest.fixture(scope="session")
def admin_headers(fuzz_gateway, gateway):
    from support import login

    return {"Authorization": f"Bearer {login(fuzz_gateway, gateway.admin_username, gateway.admin_password)}"}


@pytest.fixture
def gateway_schema(fuzz_gateway):
    # Left out: endpoints that would end the admin's own session mid-run (a generated id can be
    # the admin's own after another case lists users) – logout and disabling users or clients.
    return load_schema(fuzz_gateway).exclude(path_regex=r"^/auth/logout$|/disable$")


@pytest.fixture
def inference_schema(inference_url):
    return load_schema(inference_url)
