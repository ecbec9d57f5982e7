"""Retention purge: remove results (rows and stored images) and audit events older than the retention.

RETENTION_DAYS (0, the default, keeps everything) is the age of the results removed;
AUDIT_RETENTION_DAYS that of the audit events (RETENTION_DAYS when unset; 0 keeps them all), for
sites whose rules keep the audit trail longer than the results. Run daily:
`python -m gateway.purge` (`--dry-run` counts what would go).

- Results go in batches, oldest first: the rows of a batch are deleted and committed, then its
  images are removed from the object store. An image the store refuses to remove is left as an
  orphan, which the reaper (`gateway.reaper`) removes later; a result whose image is gone never
  stays behind.
- Audit events go oldest first, as far as every earlier event is older than the retention, in
  batches with the chain's head locked; the chain's anchor moves to the last event removed, so
  what remains verifies (`python -m gateway.audit_verify`).
- The run is recorded as an audit event `retention.purge` whose detail holds the counts and the
  anchor (`audit_anchor_seq`, `audit_anchor_hash`): the checkpoint the verification compares with.
- Expired sign-in throttling rows (kept in the database when Redis is not used) go too.

A second run finds nothing more to remove: the purge is idempotent, and a run cut short is
finished by the next one.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway import audit_chain, crud
from gateway.db import UnitOfWork, make_engine, make_session_factory
from gateway.models import AuditEvent
from gateway.settings import PurgeSettings
from gateway.storage import ObjectStore, StorageUnavailable, make_object_store

log = logging.getLogger(__name__)
_BATCH = 500


@dataclass
class Purged:
    results: int = 0
    objects: int = 0
    objects_left: int = 0  # the store refused: orphans for the reaper
    audit_events: int = 0
    throttles: int = 0
    anchor_seq: int = 0
    anchor_hash: str = audit_chain.GENESIS_HASH


def purge_results(session: UnitOfWork, store: ObjectStore, cutoff: datetime, batch: int, purged: Purged) -> None:
    while rows := crud.expired_results(session, cutoff, batch):
        crud.delete_results_and_images(session, [r for r, _, _ in rows], [i for _, i, _ in rows])
        session.commit()
        purged.results += len(rows)
        for _, _, key in rows:
            try:
                store.delete(key)
                purged.objects += 1
            except StorageUnavailable as exc:
                purged.objects_left += 1
                log.error("could not remove object %s (%s); the orphan reaper will", key, exc.reason)
        print(f"removed {purged.results} results so far", flush=True)


def purge(
    session: UnitOfWork,
    store: ObjectStore,
    results_before: datetime | None,
    audit_before: datetime | None,
    batch: int = _BATCH,
) -> Purged:
    """Remove what is older than the two cutoffs (None: keep it); records the run in the audit trail."""
    purged = Purged()
    if results_before is not None:
        purge_results(session, store, results_before, batch, purged)
    if audit_before is not None:
        trimmed = audit_chain.trim_before(session, audit_before, batch)
        purged.audit_events = trimmed.events
    purged.throttles = crud.delete_expired_login_throttles(session)
    head = audit_chain.lock_head(session)
    purged.anchor_seq, purged.anchor_hash = head.anchor_seq, head.anchor_hash
    detail = {
        "results_before": results_before.isoformat() if results_before else None,
        "audit_before": audit_before.isoformat() if audit_before else None,
        "results": purged.results,
        "objects": purged.objects,
        "objects_left": purged.objects_left,
        "audit_events": purged.audit_events,
        "audit_anchor_seq": purged.anchor_seq,
        "audit_anchor_hash": purged.anchor_hash,
    }
    event = AuditEvent(actor_kind="system", actor_name="retention purge", action="retention.purge", outcome="success")
    event.detail = json.dumps(detail)
    crud.add_audit_event(session, event)
    session.commit()
    return purged


def _cutoff(days: int, now: datetime) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")
    parser.add_argument("--batch-size", type=int, default=_BATCH)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    settings = PurgeSettings()  # the database and the object store, no token secrets
    now = datetime.now(UTC)
    results_before, audit_before = _cutoff(settings.retention_days, now), _cutoff(settings.audit_days, now)
    if results_before is None and audit_before is None:
        print("retention is off (RETENTION_DAYS=0): nothing removed", flush=True)
        return
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            if arguments.dry_run:
                results = crud.count_results_before(session, results_before) if results_before else 0
                print(f"dry run: {results} results (and their images) are older than the retention", flush=True)
                return
            purged = purge(session, make_object_store(settings), results_before, audit_before, arguments.batch_size)
    finally:
        engine.dispose()
    print(
        f"removed {purged.results} results before {results_before.isoformat() if results_before else '-'}"
        f" ({purged.objects} images, {purged.objects_left} left for the reaper),"
        f" {purged.audit_events} audit events before {audit_before.isoformat() if audit_before else '-'},"
        f" {purged.throttles} expired sign-in throttles;"
        f" audit chain anchored after event {purged.anchor_seq} ({purged.anchor_hash})",
        flush=True,
    )


if __name__ == "__main__":
    main()
