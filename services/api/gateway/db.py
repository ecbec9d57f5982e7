"""Engine and session factory; the application makes one of each at start-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.exceptions import REFUSALS, DatabaseUnavailable


class UnitOfWork(Session):
    """A session for one unit of work, and what that work did outside the database.

    `on_commit(action)` runs an action once the rows are committed (e.g. removing a deleted
    result's object); `on_rollback(action)` runs it when the rows are known not to be stored
    (e.g. removing an uploaded object again). `commit` flushes first: a flush that fails stored
    nothing, so the rollback that follows undoes the work; a commit that fails after it may have
    reached the database before the connection broke, so its outcome is unknown and nothing is
    undone (`reaper` removes an object no row refers to).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []

    def on_commit(self, action: Callable[[], None]) -> None:
        self._on_commit.append(action)

    def on_rollback(self, action: Callable[[], None]) -> None:
        self._on_rollback.append(action)

    def commit(self) -> None:
        self.flush()
        self._on_rollback.clear()
        super().commit()
        done, self._on_commit = self._on_commit, []
        for action in done:
            action()

    def rollback(self) -> None:
        undo, self._on_rollback, self._on_commit = self._on_rollback, [], []
        try:
            super().rollback()
        finally:
            for action in reversed(undo):
                action()


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns (a result's answer, its heatmap included) written and read with orjson: a sixth of an insert's
# CPU time went to the standard library's encoder
_JSON = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **_JSON)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
        **_JSON,
    )


def make_session_factory(engine: Engine) -> sessionmaker[UnitOfWork]:
    return sessionmaker(engine, class_=UnitOfWork, expire_on_commit=False)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


@contextmanager
def unit_of_work(sessions: sessionmaker[UnitOfWork]) -> Iterator[UnitOfWork]:
    """One transaction, committed once when the block ends: a refused block (a 4xx) commits what it
    recorded of the refusal (`audit.recorded` rolls its work back first); any other failure rolls
    everything back. A commit that fails is `DatabaseUnavailable`."""
    with sessions() as session:
        try:
            yield session
        except REFUSALS:
            _commit(session)
            raise
        except BaseException:
            session.rollback()
            raise
        _commit(session)


def _commit(session: UnitOfWork) -> None:
    if not session.in_transaction():
        return
    try:
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise DatabaseUnavailable from exc
