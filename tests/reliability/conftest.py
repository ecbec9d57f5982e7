"""One stack of processes for the whole folder: load, faults and the restart run against it in turn.

RELIABILITY_REQUESTS (1,000 by default, 10,000 in the long form) sets the load test's size;
RELIABILITY_OUTAGE_SECONDS (4 by default) how long each fault keeps its dependency away.
"""

import os
from pathlib import Path

import pytest
from processes import REPO_ROOT

from reliability.load import LoadReport, sample_images, service_client_token
from reliability.stack import start_stack

REQUESTS = int(os.environ.get("RELIABILITY_REQUESTS", "1000"))
OUTAGE_SECONDS = float(os.environ.get("RELIABILITY_OUTAGE_SECONDS", "4"))
MODEL_REPOSITORY = Path(os.environ.get("CXR_MODEL_REPOSITORY", REPO_ROOT / "models"))


@pytest.fixture(scope="session")
def stack(data_dir):
    stack = start_stack(MODEL_REPOSITORY)
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def images(data_dir):
    return sample_images(data_dir)


@pytest.fixture(scope="session")
def service_token(stack):
    return service_client_token(stack.url, stack.env["FIRST_ADMIN_USERNAME"], stack.env["FIRST_ADMIN_PASSWORD"])


@pytest.fixture(scope="session")
def history():
    """Every answer the load of all tests so far got, for reconciling the idempotent retries."""
    return LoadReport()
