"""Schemathesis fuzzing of the gateway's and the inference service's OpenAPI schemas.

Valid and invalid requests are generated (both generation modes); each must get no 5xx, a status
code the schema documents, and a body that conforms to the schema. FUZZ_MAX_EXAMPLES (cases per
operation; 10 by default, for CI) sets the depth, e.g. FUZZ_MAX_EXAMPLES=1000 for the long form.
Cases are derandomized, so a CI failure reproduces on the next run.

The operations are run as subtests here rather than through `schemathesis.pytest.from_fixture`,
whose lazy runner does not work with pytest 9.2 (it sets `node._nodeid`, which pytest 9.2 lacks).
"""

import os

from hypothesis import HealthCheck, given, settings, strategies
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from reliability import evidence  # the long form's figures (scripts/verify.sh)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

fuzz_settings = settings(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES", "10")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz(schema, subtests, headers=None) -> dict:
    """Fuzz each operation of the schema as its own subtest; returns how many cases ran and operations failed."""
    counts = {"operations": 0, "cases": 0, "failed_operations": 0}
    for result in schema.get_all_operations():
        operation = result.ok()

        @fuzz_settings
        @given(case=strategies.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
        def check(case):
            counts["cases"] += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        with subtests.test(operation.label):
            counts["operations"] += 1
            try:
                check()
            except Exception:
                counts["failed_operations"] += 1
                raise
    return counts


def test_gateway_conforms_to_its_schema(gateway_schema, admin_headers, subtests):
    evidence.record("fuzz-gateway", fuzz(gateway_schema, subtests, admin_headers))


def test_inference_conforms_to_its_schema(inference_schema, subtests):
    evidence.record("fuzz-inference", fuzz(inference_schema, subtests))
