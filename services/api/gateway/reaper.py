"""Remove orphaned objects: objects under `images/` that no image row refers to.

An image's key is in images.object_key (see `classification` for the key scheme). The
heatmap overlays that schema 0004 stored beside the images are orphans since 0005 (the
heatmap lives in the result row), and are removed like any other.

The classify path removes its object when the database write fails, but a crash between
the two writes, or an object store that refused a delete, can still leave one behind.
Only objects older than a grace period are removed, so an upload whose row is about to be
committed is never touched. Run periodically: `python -m gateway.reaper --older-than-minutes 60`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

from sqlalchemy.orm import Session

from gateway import crud
from gateway.db import make_engine, make_session_factory
from gateway.settings import ReaperSettings
from gateway.storage import ObjectStore, make_object_store

log = logging.getLogger(__name__)
IMAGE_PREFIX = "images/"
_BATCH = 500


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def reap_orphans(session: Session, store: ObjectStore, older_than: timedelta) -> list[str]:
    """Delete the objects under `images/` older than `older_than` that no row refers to; returns their keys."""
    cutoff = datetime.now(UTC) - older_than
    candidates = (stored.key for stored in store.list_objects(IMAGE_PREFIX) if stored.last_modified < cutoff)
    removed = []
    for keys in _batches(candidates, _BATCH):
        orphans = set(keys) - crud.referenced_object_keys(session, keys)
        for key in sorted(orphans):
            store.delete(key)
            removed.append(key)
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--older-than-minutes", type=float, default=60.0)
    arguments = parser.parse_args()
    settings = ReaperSettings()  # the database and the object store, no token secrets
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            removed = reap_orphans(
                session, make_object_store(settings), timedelta(minutes=arguments.older_than_minutes)
            )
    finally:
        engine.dispose()
    for key in removed:
        print(f"removed orphan {key}", flush=True)
    print(f"{len(removed)} orphaned objects removed", flush=True)


if __name__ == "__main__":
    main()
