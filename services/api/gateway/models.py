"""SQLAlchemy 2 typed models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from cxr_model.answer import Classification


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time with its zone (SQLite returns them without)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Base(DeclarativeBase):
    pass


# the organisation migration 0009 puts every account and result of an older database in
DEFAULT_ORGANISATION_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


class Organisation(Base):
    """A hospital or hospital group: its users and API clients see the results submitted in it, no others."""

    __tablename__ = "organisations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # set by an administrator's password reset: until the user chooses a new password, only
    # GET /me, POST /me/password and logout answer
    must_change_password: Mapped[bool] = mapped_column(default=False)
    # access tokens carry the epoch they were issued in (claim "gen"); a password change, reset, disable
    # or enable moves it on, and the tokens of the epochs before are refused
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id"), index=True, default=DEFAULT_ORGANISATION_ID
    )

    @property
    def credential_hash(self) -> str:
        return self.hashed_password

    @credential_hash.setter
    def credential_hash(self, value: str) -> None:
        self.hashed_password = value


class ApiClient(Base):
    """A hospital system that gets tokens by OAuth2 client credentials (role `service`)."""

    __tablename__ = "api_clients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    hashed_secret: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="service")
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id"), index=True, default=DEFAULT_ORGANISATION_ID
    )

    @property
    def credential_hash(self) -> str:
        return self.hashed_secret

    @credential_hash.setter
    def credential_hash(self, value: str) -> None:
        self.hashed_secret = value


class RefreshToken(Base):
    """One refresh token (only its SHA-256 is kept); rotation chains tokens of one login into a family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the sign-in the family started with: no refresh goes past SESSION_MAX_HOURS after it
    session_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedAccessToken(Base):
    """An access token signed out before its expiry; kept until it would have expired anyway."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class LoginThrottle(Base):
    """Sign-in attempts for one account name from one address, counted while Redis is not configured
    or not reachable (`ratelimit`): `failures` attempts in the window that ends at `locked_until`."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of username and address
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_occurred", "actor_id", "occurred_at"),
        # the events still to be chained (written by an older gateway): empty almost always
        Index(
            "ix_audit_events_unchained",
            "occurred_at",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor_kind: Mapped[str | None] = mapped_column(String(16))  # user, client, or None when unknown
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)
    # the hash chain (`audit_chain`): the event's place, the previous event's hash and its own
    # SHA-256 over its content and that hash; null only while an older gateway wrote it unchained
    seq: Mapped[int | None] = mapped_column(BigInteger, index=True, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The one row (id 1) every audit event is chained through: locked by each append, so that
    replicas never fork the chain. `anchor` is where verification starts: the last event the
    retention purge removed (seq 0 and the genesis hash while none was)."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    anchor_seq: Mapped[int] = mapped_column(BigInteger)
    anchor_hash: Mapped[str] = mapped_column(String(64))


class Image(Base):
    """An uploaded image file as stored in the object store (no patient data in the key)."""

    __tablename__ = "images"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    object_key: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # DICOM only: kept from the de-identified file as result metadata
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(16))
    # the de-identified file's UIDs (derived from the hospital's with a secret): a hospital's SOP Instance
    # UID finds its results once mapped the same way, and the de-identified SR and FHIR answers cite them
    study_instance_uid: Mapped[str | None] = mapped_column(String(64))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    # pixels as displayed (EXIF orientation applied); what the explanation overlay is drawn to
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClassificationJSON(TypeDecorator[Classification]):
    """The model's whole answer, stored as the JSON the inference service sent."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Classification | None, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else value.model_dump(mode="json", by_alias=True)

    def process_result_value(self, value: Any, dialect: Dialect) -> Classification | None:
        return None if value is None else Classification.model_validate(value)


class Result(Base):
    """One classification of one image by one model version: the model's answer, and who asked for it."""

    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_created_at", "created_at"),
        Index("ix_results_label_created_at", "label", "created_at"),
        Index("ix_results_model_created_at", "model_name", "created_at"),
        Index("ix_results_ood_created_at", "ood", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    image_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("images.id"), index=True)
    classification: Mapped[Classification] = mapped_column(ClassificationJSON)
    # copied from the answer (see `_copy_filter_columns`): what results are filtered, sorted and indexed by
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(64))
    ood: Mapped[bool | None] = mapped_column(Boolean)  # None: the model has no out-of-distribution guard
    # what the intended-use gate saw before the model ran: the image-kind model's answer ({label, name,
    # probability, model}), the warnings the result carries ([{code, detail, found, accepted}], e.g. a
    # population mismatch) and the patient's age band (never the age); null / [] for results from before it
    image_kind: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    age_band: Mapped[str | None] = mapped_column(String(16))
    # the caller's own references (never patient identifiers): the external id as given, the accession
    # number only as its keyed digest (`pseudonyms.accession_digest`; the PS3.15 profile removes it)
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    external_id: Mapped[str | None] = mapped_column(String(128), index=True)
    # "<kind>:<submitter id>:<Idempotency-Key>", and the SHA-256 of the request it answered
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    # exactly one of the two: results are submitted by a user or by an API client
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_by_client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_clients.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the submitter's organisation: who may see the result
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id"), index=True, default=DEFAULT_ORGANISATION_ID
    )

    image: Mapped[Image] = relationship(lazy="joined")
    created_by: Mapped[User | None] = relationship(lazy="joined")
    created_by_client: Mapped[ApiClient | None] = relationship(lazy="joined")

    @validates("classification")
    def _copy_filter_columns(self, _key: str, answer: Classification) -> Classification:
        """The columns copied from the answer are set with it, so that they cannot disagree."""
        self.model_name, self.model_version, self.label = answer.model_name, answer.model_version, answer.label
        self.ood = answer.ood.flagged if answer.ood else None
        return answer

    @property
    def submitter_name(self) -> str:
        submitter = self.created_by or self.created_by_client
        if submitter is None:
            raise ValueError(f"result {self.id} has no submitter")
        return submitter.username if isinstance(submitter, User) else submitter.name
