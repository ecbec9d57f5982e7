"""A pytest plugin for the long form (`-p reliability.plugin`): counts passed and failed tests per
file and per test function into pytest.json in $RELIABILITY_RESULTS_DIR (merged across runs)."""

from __future__ import annotations

import json

from reliability.evidence import results_dir

_counts: dict[str, dict] = {}


def pytest_runtest_logreport(report) -> None:
    if report.when != "call" and not (report.failed or report.skipped):
        return  # a passing setup or teardown: the call phase counts it
    if report.when == "teardown" and report.skipped:
        return
    outcome = report.outcome  # passed, failed or skipped
    test_file, _, test = report.nodeid.partition("::")
    function = test.split("[", 1)[0]
    counts = _counts.setdefault(test_file, {"by_test": {}})
    counts[outcome] = counts.get(outcome, 0) + 1
    per_test = counts["by_test"].setdefault(function, {})
    per_test[outcome] = per_test.get(outcome, 0) + 1


def pytest_sessionfinish(session) -> None:
    folder = results_dir()
    if not folder:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pytest.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(merged | _counts, indent=2))
