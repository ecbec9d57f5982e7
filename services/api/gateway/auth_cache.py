"""Tokens accepted a moment ago, answered again without the database.

A classification would otherwise read the token's revocation and the caller's account on every request.
An accepted token is trusted again for `AUTHENTICATION_CACHE_SECONDS` (at most one second), never past its
expiry: a token revoked, or an account disabled, changed or deleted by another replica is refused within that
second. This process's own changes to accounts and revocations forget every entry when they are committed,
so here they apply at once.
"""

from __future__ import annotations

import threading
import time
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from gateway.models import ApiClient, Organisation, RevokedAccessToken, User
from gateway.principals import Principal

Authentication = tuple[Principal, dict[str, Any]]  # the caller and its token's claims
_WATCHED = (User, ApiClient, Organisation, RevokedAccessToken)
_CHANGED = "authentication_changed"


class RecentAuthentications:
    """Accepted tokens by their text, each until `seconds` after it was checked (or its expiry, if sooner).

    At most `max_entries`: past that, expired entries are dropped, and all of them if none has expired,
    so that no number of distinct valid tokens grows it without bound."""

    def __init__(self, seconds: float, max_entries: int = 10_000):
        self.seconds, self.max_entries = seconds, max_entries
        self._entries: dict[str, tuple[float, Authentication]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # moves on each forget: a check that started before it is not kept

    def get(self, token: str | None) -> Authentication | None:
        entry = self._entries.get(token) if token else None
        if entry is None or time.monotonic() >= entry[0]:
            return None
        return entry[1]

    def put(self, token: str, authenticated: Authentication, generation: int) -> None:
        """Keep an accepted token, unless the entries were forgotten since its check began (`generation`)."""
        if self.seconds <= 0:
            return
        now = time.monotonic()
        until = now + min(self.seconds, float(authenticated[1]["exp"]) - time.time())
        with self._lock:
            if generation != self.generation or until <= now:
                return
            if len(self._entries) >= self.max_entries:
                self._entries = {key: entry for key, entry in self._entries.items() if entry[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries = {}
            self._entries[token] = (until, authenticated)

    def forget_all(self) -> None:
        with self._lock:
            self._entries = {}
            self.generation += 1


def forget_on_account_changes(sessions: sessionmaker[Any], recent: RecentAuthentications) -> None:
    """Forget every accepted token once a session of `sessions` commits a change to an account, an
    organisation or a revocation (ORM objects or bulk UPDATE/DELETE statements)."""

    @event.listens_for(sessions, "after_flush")
    def _flushed(session: Session, _context: Any) -> None:
        if any(isinstance(item, _WATCHED) for item in chain(session.new, session.dirty, session.deleted)):
            session.info[_CHANGED] = True

    @event.listens_for(sessions, "do_orm_execute")
    def _executed(state: ORMExecuteState) -> None:
        if (state.is_update or state.is_delete) and any(m.class_ in _WATCHED for m in state.all_mappers):
            state.session.info[_CHANGED] = True

    @event.listens_for(sessions, "after_commit")
    def _committed(session: Session) -> None:
        if session.info.pop(_CHANGED, False):
            recent.forget_all()

    @event.listens_for(sessions, "after_soft_rollback")
    def _rolled_back(session: Session, _previous: Any) -> None:
        session.info.pop(_CHANGED, None)
