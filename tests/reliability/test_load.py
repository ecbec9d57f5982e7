"""Load at concurrency 32 through the whole stack, then rows against objects against answers."""


from support import run_async

from reliability import evidence
from reliability.conftest import REQUESTS
from reliability.load import run_load
from reliability.reconcile import reconcile
from reliability.stack import BUCKET

P99_LIMIT_MS = 10_000  # generous: 32 callers on a shared 2-core machine; the figure itself is recorded


def test_load_is_served_without_errors_and_reconciles_exactly(stack, service_token, images, history):
    report = run_async(run_load(stack.url, service_token, images, requests=REQUESTS, concurrency=32))
    history.outcomes += report.outcomes
    summary = report.summary()
    found = reconcile(stack.database_dsn, stack.s3_client(), BUCKET, history)
    evidence.record("load", summary | {"reconciliation": found.summary()})

    assert summary["requests"] >= REQUESTS
    assert summary["errors"] == 0, summary["statuses"]
    assert set(summary["statuses"]) == {"200", "201"}  # 200: the idempotent retries' replays
    assert summary["p99_ms"] < P99_LIMIT_MS, summary
    assert found.exact, found.problems()
    assert len(report.result_ids()) == report.statuses()[201]  # a replay (200) names its first answer's result
    assert summary["idempotent_keys"] >= REQUESTS // 20
