"""Database reads and writes; routes and services call these, never raw queries.

Writes are added and flushed, never committed: the request's unit of work commits once (see `deps`).
"""

import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Select, case, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gateway import audit_chain
from gateway.models import (
    DEFAULT_ORGANISATION_ID,
    ApiClient,
    AuditEvent,
    Image,
    LoginThrottle,
    Organisation,
    RefreshToken,
    Result,
    RevokedAccessToken,
    User,
    as_utc,
    utcnow,
)
from gateway.principals import Principal
from gateway.schemas import UserCreate
from gateway.security import hash_password

# users


def get_user(session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, user_in: UserCreate, organisation_id: uuid.UUID = DEFAULT_ORGANISATION_ID) -> User:
    user = User(
        username=user_in.username,
        hashed_password=hash_password(user_in.password),
        role=user_in.role,
        organisation_id=organisation_id,
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count_users(session: Session) -> int:
    return _count(session, select(User))


Account = TypeVar("Account", User, ApiClient)


def set_active(session: Session, account: Account, active: bool) -> Account:
    account.is_active = active
    session.flush()
    return account


# organisations


def get_organisation(session: Session, organisation_id: uuid.UUID) -> Organisation | None:
    return session.get(Organisation, organisation_id)


def get_organisation_by_name(session: Session, name: str) -> Organisation | None:
    return session.scalar(select(Organisation).where(Organisation.name == name))


def add_organisation(session: Session, name: str) -> Organisation:
    organisation = Organisation(name=name)
    session.add(organisation)
    session.flush()
    return organisation


def list_organisations(session: Session) -> list[Organisation]:
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


# API clients


def get_client(session: Session, client_uuid: uuid.UUID) -> ApiClient | None:
    return session.get(ApiClient, client_uuid)


def get_client_by_client_id(session: Session, client_id: str) -> ApiClient | None:
    return session.scalar(select(ApiClient).where(ApiClient.client_id == client_id))


def add_client(session: Session, client: ApiClient) -> ApiClient:
    session.add(client)
    session.flush()
    return client


def set_client_secret(session: Session, client: ApiClient, hashed_secret: str) -> ApiClient:
    client.hashed_secret = hashed_secret
    session.flush()
    return client


def list_clients(session: Session) -> list[ApiClient]:
    return list(session.scalars(select(ApiClient).order_by(ApiClient.name)))


# refresh and revoked access tokens


def add_refresh_token(session: Session, token: RefreshToken) -> RefreshToken:
    session.add(token)
    session.flush()
    return token


def get_refresh_token(session: Session, token_hash: str) -> RefreshToken | None:
    return session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


def mark_refresh_token_used(session: Session, token: RefreshToken) -> bool:
    """Marks an unused token used; False when another request used it first (a replay)."""
    claimed = session.scalar(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(used_at=utcnow())
        .returning(RefreshToken.id)
    )
    return claimed is not None


def revoke_refresh_family(session: Session, family_id: uuid.UUID) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_user_refresh_tokens(session: Session, user_id: uuid.UUID) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_access_token(session: Session, jti: str, expires_at: datetime) -> None:
    session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < utcnow()))
    session.merge(RevokedAccessToken(jti=jti, expires_at=expires_at))
    session.flush()


def is_access_token_revoked(session: Session, jti: str) -> bool:
    return session.get(RevokedAccessToken, jti) is not None


# failed-login throttling


def count_login_attempt(session: Session, key: str, max_failures: int, lockout_seconds: int) -> tuple[int, datetime]:
    """Counts one attempt of `key` in one upsert (atomic: the row stays locked until the commit);
    returns the attempts in its window and when the window ends. A window starts with the first
    attempt and again with attempt `max_failures`, so a lock lasts `lockout_seconds` after that one."""
    now = utcnow()
    ends = now + timedelta(seconds=lockout_seconds)
    upsert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    table = LoginThrottle.__table__.c
    over = or_(table.locked_until.is_(None), table.locked_until <= now)
    statement = (
        upsert(LoginThrottle)
        .values(key=key, failures=1, locked_until=ends)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "failures": case((over, 1), else_=table.failures + 1),
                "locked_until": case((or_(over, table.failures + 1 == max_failures), ends), else_=table.locked_until),
            },
        )
        .returning(LoginThrottle.failures, LoginThrottle.locked_until)
    )
    count, window_ends = session.execute(statement).one()
    return int(count), as_utc(cast(datetime, window_ends))


def count_backoff_attempt(session: Session, key: str, free: int, max_wait: int, window_seconds: int) -> int:
    """Counts one attempt of `key` unless it must still wait (then returns the seconds left). Past `free`
    attempts each one sets the wait before the next: 1 s, 2 s, 4 s ... up to `max_wait`. `locked_until`
    holds the moment the next attempt may come; the count starts again `window_seconds` after it."""
    upsert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(upsert(LoginThrottle).values(key=key, failures=0).on_conflict_do_nothing())
    row = session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    now = utcnow()
    next_allowed = as_utc(row.locked_until) if row.locked_until else None
    if next_allowed and next_allowed > now:
        return max(1, int((next_allowed - now).total_seconds() + 0.999))
    if next_allowed is None or now > next_allowed + timedelta(seconds=window_seconds):
        row.failures = 0
    row.failures += 1
    wait = 0 if row.failures <= free else min(2 ** (row.failures - free - 1), max_wait)
    row.locked_until = now + timedelta(seconds=wait)
    session.flush()
    return 0


def forgive_login_attempt(session: Session, key: str) -> None:
    """One counted attempt of `key` turned out right: it no longer counts."""
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key, LoginThrottle.failures > 0)
        .values(failures=LoginThrottle.failures - 1)
    )


def delete_expired_login_throttles(session: Session) -> int:
    deleted = session.execute(delete(LoginThrottle).where(LoginThrottle.locked_until < utcnow()))
    return cast(CursorResult[Any], deleted).rowcount


def clear_login_throttle(session: Session, key: str) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


# audit trail


@dataclass(frozen=True)
class _Filter:
    def searched(self) -> dict[str, str]:
        """The filters that are set, as text (what the audit trail records of a search)."""
        values = ((field.name, getattr(self, field.name)) for field in fields(self) if field.name != "sort")
        return {name: str(value) for name, value in values if value is not None}


@dataclass(frozen=True)
class AuditFilter(_Filter):
    actor: str | None = None  # an actor's id or name
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def add_audit_event(session: Session, event: AuditEvent) -> None:
    """Append the event to the audit chain (which stays locked until the transaction ends)."""
    audit_chain.append(session, event)


def _audit_filtered(where: AuditFilter) -> Select[Any]:
    query = select(AuditEvent)
    if where.actor:
        query = query.where((AuditEvent.actor_id == where.actor) | (AuditEvent.actor_name == where.actor))
    if where.action:
        query = query.where(AuditEvent.action == where.action)
    if where.since:
        query = query.where(AuditEvent.occurred_at >= where.since)
    if where.until:
        query = query.where(AuditEvent.occurred_at < where.until)
    return query


def list_audit_events(session: Session, where: AuditFilter, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
    query = _audit_filtered(where)
    ordered = query.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(ordered)), _count(session, query)


def count_audit_events(session: Session, where: AuditFilter) -> int:
    return _count(session, _audit_filtered(where))


def audit_events_after(
    session: Session, where: AuditFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[AuditEvent]:
    """A page of the filtered events, oldest first, after the (occurred_at, id) of the last one read."""
    query = _audit_filtered(where)
    if after is not None:
        query = query.where(tuple_(AuditEvent.occurred_at, AuditEvent.id) > tuple_(*after))
    return list(session.scalars(query.order_by(AuditEvent.occurred_at, AuditEvent.id).limit(limit)))


# images and results


def add_result(session: Session, image: Image, result: Result, submitter: Principal) -> None:
    """Insert the rows. The submitter is linked by its id (its account is not read: the answer names it from
    the principal, `ClassifyOut.of(..., created_by=)`)."""
    result.organisation_id = submitter.organisation_id
    session.add_all([image, result])
    session.flush()


def delete_rows(session: Session, result: Result) -> None:
    """Delete a result and its image row."""
    session.delete(result)
    session.delete(result.image)
    session.flush()


def referenced_object_keys(session: Session, keys: list[str]) -> set[str]:
    """Those of `keys` that an image row refers to."""
    return set(session.scalars(select(Image.object_key).where(Image.object_key.in_(keys))))


def get_result_by_idempotency_key(session: Session, scoped_key: str) -> Result | None:
    return session.scalar(select(Result).where(Result.idempotency_key == scoped_key))


def _visible_to(query: Select[Any], viewer: Principal) -> Select[Any]:
    """API clients see only what they submitted; people see the results of their organisation."""
    if viewer.is_client:
        return query.where(Result.created_by_client_id == viewer.id)
    return query.where(Result.organisation_id == viewer.organisation_id)


def get_result(session: Session, result_id: uuid.UUID, viewer: Principal) -> Result | None:
    return session.scalar(_visible_to(select(Result).where(Result.id == result_id), viewer))


@dataclass(frozen=True)
class ResultFilter(_Filter):
    label: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    submitted_by: str | None = None  # a user's username or an API client's name
    ood: bool | None = None  # flagged as out of distribution (False: checked and not flagged)
    accession_number: str | None = None
    external_id: str | None = None
    sop_instance_uid: str | None = None  # the de-identified image's (the hospital's, mapped the same way)
    sort: str = "-created_at"  # a column name from RESULT_SORTS, "-" for descending


RESULT_SORTS = {"created_at": Result.created_at, "label": Result.label, "model_name": Result.model_name}


def _filtered(query: Select[Any], where: ResultFilter) -> Select[Any]:
    if where.label:
        query = query.where(Result.label == where.label)
    if where.model:
        query = query.where(Result.model_name == where.model)
    if where.ood is not None:
        query = query.where(Result.ood == where.ood)
    if where.since:
        query = query.where(Result.created_at >= where.since)
    if where.until:
        query = query.where(Result.created_at < where.until)
    if where.accession_number:
        query = query.where(Result.accession_number == where.accession_number)
    if where.external_id:
        query = query.where(Result.external_id == where.external_id)
    if where.sop_instance_uid:
        images = select(Image.id).where(Image.sop_instance_uid == where.sop_instance_uid)
        query = query.where(Result.image_id.in_(images))
    if where.submitted_by:
        users = select(User.id).where(User.username == where.submitted_by)
        clients = select(ApiClient.id).where(ApiClient.name == where.submitted_by)
        query = query.where(Result.created_by_id.in_(users) | Result.created_by_client_id.in_(clients))
    return query


def _ordered(query: Select[Any], sort: str) -> Select[Any]:
    column = RESULT_SORTS[sort.removeprefix("-")]
    direction = (lambda c: c.desc()) if sort.startswith("-") else (lambda c: c.asc())
    return query.order_by(direction(column), direction(Result.created_at), direction(Result.id))


def count_results(session: Session, viewer: Principal, where: ResultFilter) -> int:
    return _count(session, _filtered(_visible_to(select(Result), viewer), where))


def results_after(
    session: Session, viewer: Principal, where: ResultFilter, after: tuple[Any, datetime, uuid.UUID] | None, limit: int
) -> list[Result]:
    """A page of the filtered results in `where.sort`'s order, after the (sort column, created_at, id)
    of the last one read: pages stay apart while results are added or removed."""
    name = where.sort.removeprefix("-")
    query = _filtered(_visible_to(select(Result), viewer), where)
    if after is not None:
        position = tuple_(RESULT_SORTS[name], Result.created_at, Result.id)
        query = query.where(position < tuple_(*after) if where.sort.startswith("-") else position > tuple_(*after))
    return list(session.scalars(_ordered(query, where.sort).limit(limit)).unique())


def sort_position(result: Result, sort: str) -> tuple[Any, datetime, uuid.UUID]:
    return getattr(result, sort.removeprefix("-")), result.created_at, result.id


def expired_results(session: Session, cutoff: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """(result id, image id, object key) of the oldest results created before `cutoff`."""
    rows = session.execute(
        select(Result.id, Image.id, Image.object_key)
        .join(Image, Image.id == Result.image_id)
        .where(Result.created_at < cutoff)
        .order_by(Result.created_at, Result.id)
        .limit(limit)
    ).all()
    return [(result_id, image_id, key) for result_id, image_id, key in rows]


def count_results_before(session: Session, cutoff: datetime) -> int:
    return _count(session, select(Result.id).where(Result.created_at < cutoff))


def delete_results_and_images(session: Session, result_ids: list[uuid.UUID], image_ids: list[uuid.UUID]) -> None:
    session.execute(delete(Result).where(Result.id.in_(result_ids)))
    session.execute(delete(Image).where(Image.id.in_(image_ids)))


def list_results(
    session: Session, viewer: Principal, where: ResultFilter, limit: int, offset: int
) -> tuple[list[Result], int]:
    query = _filtered(_visible_to(select(Result), viewer), where)
    page = _ordered(query, where.sort).limit(limit).offset(offset)
    return list(session.scalars(page).unique()), _count(session, query)


def _count(session: Session, query: Select[Any]) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
