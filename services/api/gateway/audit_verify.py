"""Verify the audit trail's hash chain: `python -m gateway.audit_verify`.

Walks the chain from its anchor (the last event the retention purge removed) to its head and
reports every event that was changed, removed or inserted, and newest events that are missing.
Prints the head (its seq and hash) either way: kept outside the database (a log system, a ticket),
it also shows a chain rewritten as a whole. Exits 0 when the chain is intact, 1 when it is not.
"""

from __future__ import annotations

import argparse
import sys

from gateway import audit_chain
from gateway.db import make_engine, make_session_factory
from gateway.settings import DatabaseSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    engine = make_engine(DatabaseSettings().database_url)
    try:
        with make_session_factory(engine)() as session:
            report = audit_chain.verify(session)
    finally:
        engine.dispose()
    span = f"events {report.first_seq} to {report.head_seq}" if report.checked else "no events"
    print(
        f"audit chain: {report.checked} events checked ({span}), anchored after event {report.anchor_seq};"
        f" head {report.head_seq} {report.head_hash}",
        flush=True,
    )
    if report.unchained:
        print(f"{report.unchained} events are not chained yet (written by an older gateway version)", flush=True)
    if report.ok:
        print("audit chain intact", flush=True)
        return
    for problem in report.problems[:50]:
        print(f"BROKEN: {problem}", flush=True)
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more", flush=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
