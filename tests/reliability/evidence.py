"""The numbers the checks produce, kept as JSON files in $RELIABILITY_RESULTS_DIR, and the long form's table.

Without RELIABILITY_RESULTS_DIR (the normal test suite) record() does nothing.
`python -m reliability.evidence FOLDER` prints the table from a folder of results.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RESULTS_DIR_VARIABLE = "RELIABILITY_RESULTS_DIR"


def results_dir() -> Path | None:
    folder = os.environ.get(RESULTS_DIR_VARIABLE)
    return Path(folder) if folder else None


def record(name: str, numbers: dict) -> None:
    folder = results_dir()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(numbers, indent=2, default=str))


def load_all(folder: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _tests(results: dict, test_file: str, test_name: str | None = None) -> tuple[int, int]:
    """(passed, run) of one test file's tests, or of one test function's parametrized cases."""
    counts = results.get("pytest", {}).get(test_file, {})
    if test_name is not None:
        counts = counts.get("by_test", {}).get(test_name, {})
    passed = counts.get("passed", 0)
    return passed, passed + counts.get("failed", 0)


def _passed(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(results: dict) -> list[tuple[str, str, str]]:
    """(check, figures, verdict) rows."""
    rows = []
    if load := results.get("load"):
        reconciled = load["reconciliation"]
        rows.append(
            (
                "load held (c=32)",
                f"{load['requests']} requests, {load['requests_per_second']} req/s, p50 {load['p50_ms']:.0f} ms, "
                f"p95 {load['p95_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, errors {load['errors']}",
                _passed(load["errors"] == 0 and reconciled["exact"]),
            )
        )
    for name, fault in sorted((n, f) for n, f in results.items() if n.startswith("fault-")):
        recovery = fault["recovery_seconds"]
        recovered = f"recovered in {recovery:.1f} s" if recovery is not None else "NOT recovered"
        rows.append(
            (
                f"fault: {fault['fault']}",
                f"{fault['requests']} requests, {fault['unavailable_503']} x 503 (all with Retry-After: "
                f"{'yes' if fault['503_without_retry_after'] == 0 else 'NO'}), slowest {fault['slowest_s']:.1f} s, "
                f"{recovered}, orphans reaped {fault['orphans_reaped']}, "
                f"readiness {fault['readiness_during_outage']['checks']}",
                _passed(fault.get("passed", False)),
            )
        )
    hostile_passed, hostile_run = _tests(
        results, "tests/security/test_hostile_files.py", "test_hostile_upload_gets_its_expected_answer"
    )
    if hostile_run:
        refused = results.get("hostile", {}).get("refused", hostile_run)
        rows.append(
            (
                "hostile inputs",
                f"{hostile_run} tried, {refused} of them refused with a 4xx problem, "
                f"{hostile_passed} answered as expected",
                _passed(hostile_passed == hostile_run),
            )
        )
    for schema in ("gateway", "inference"):
        if fuzz := results.get(f"fuzz-{schema}"):
            rows.append(
                (
                    f"fuzz: {schema} schema",
                    f"{fuzz['cases']} cases over {fuzz['operations']} operations, "
                    f"{fuzz['failed_operations']} operations with a server error or schema violation",
                    _passed(fuzz["failed_operations"] == 0),
                )
            )
    attacks_passed, attacks_run = _tests(results, "tests/security/test_auth_attacks.py")
    if attacks_run:
        rows.append(
            (
                "auth attacks",
                f"{attacks_run} tried, {attacks_passed} refused with the right status and audited",
                _passed(attacks_passed == attacks_run),
            )
        )
    if durable := results.get("durability"):
        rows.append(
            (
                "durability (restart)",
                f"{durable['results']} results, {durable['images_read']} of their images (and heatmaps) read back "
                "intact after the restart "
                f"({durable['restarted']}); migrations re-run: {durable['migrations']}",
                _passed(durable.get("passed", False)),
            )
        )
    reconciliations = [r["reconciliation"] for n, r in results.items() if "reconciliation" in r]
    if reconciliations:
        last = max(reconciliations, key=lambda found: found["rows"])
        rows.append(
            (
                "records reconciled",
                f"{last['rows']} result rows, {last['objects']} objects, {last['answered']} answered ids; "
                f"{sum(not found['exact'] for found in reconciliations)} of {len(reconciliations)} "
                "reconciliations with a mismatch",
                _passed(all(found["exact"] for found in reconciliations)),
            )
        )
    return rows


def format_table(rows: list[tuple[str, str, str]]) -> str:
    width = max((len(check) for check, _, _ in rows), default=10)
    lines = [f"{'check':<{width}} | verdict | figures", f"{'-' * width}-+---------+-{'-' * 60}"]
    lines += [f"{check:<{width}} | {verdict:<7} | {figures}" for check, figures, verdict in rows]
    return "\n".join(lines)


def hostile_corpus() -> dict:
    """How many of the corpus's inputs must be refused (the rest are odd but valid images)."""
    from make_hostile_corpus import generate  # scripts/ on the path

    corpus = generate()
    return {"inputs": len(corpus), "refused": sum(entry.expected_code is not None for entry in corpus)}


def main() -> int:
    results = load_all(Path(sys.argv[1]))
    if "pytest" in results and "tests/security/test_hostile_files.py" in results["pytest"]:
        results["hostile"] = hostile_corpus()
    rows = table(results)
    print(format_table(rows))
    return 0 if rows and all(verdict == "PASS" for _, _, verdict in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
