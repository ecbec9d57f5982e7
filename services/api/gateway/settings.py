"""Gateway settings, from the environment."""

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32


class DatabaseSettings(BaseSettings):
    """What the one-shot migration step needs, and nothing more."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = "sqlite:///./.local/cxr.db"


class PrestartSettings(DatabaseSettings):
    environment: Literal["development", "production"] = "production"
    first_admin_username: str = "admin"
    # required outside development; in development generated and printed once (to the terminal) when not given
    first_admin_password: str | None = None
    # the gateway's: migration 0009 stores the accession numbers already kept as their keyed digests
    deidentification_uid_secret: str = ""


class StorageSettings(BaseSettings):
    """The object store."""

    model_config = SettingsConfigDict(extra="ignore")

    environment: Literal["development", "production"] = "production"

    storage_backend: Literal["s3", "local"] = "s3"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "cxr-images"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    local_storage_dir: Path = Path(".local/objects")
    # sent with every upload (x-amz-server-side-encryption): "AES256" (SSE-S3) or "aws:kms"; empty: the bucket's default
    s3_server_side_encryption: Literal["", "AES256", "aws:kms"] = ""

    @model_validator(mode="after")
    def _storage_keys_outside_development(self) -> "StorageSettings":
        keys = self.s3_access_key_id and self.s3_secret_access_key
        if self.environment != "development" and self.storage_backend == "s3" and not keys:
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set outside development")
        return self


class ReaperSettings(DatabaseSettings, StorageSettings):
    """What the orphan sweep (`python -m gateway.reaper`) needs: the database and the object store."""


class PurgeSettings(DatabaseSettings, StorageSettings):
    """What the retention purge (`python -m gateway.purge`) needs: the database, the object store and the ages."""

    # results (rows and images) older than this many days are removed; 0 keeps everything (the default)
    retention_days: int = Field(default=0, ge=0)
    # audit events older than this many days are removed; unset: RETENTION_DAYS; 0 keeps them all
    audit_retention_days: int | None = Field(default=None, ge=0)

    @field_validator("audit_retention_days", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def audit_days(self) -> int:
        return self.retention_days if self.audit_retention_days is None else self.audit_retention_days


class Settings(DatabaseSettings, StorageSettings):
    jwt_secret: str = ""
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "cxr-gateway"
    jwt_audience: str = "cxr-api"
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    # clock skew between replicas accepted on a token's exp, nbf and iat
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # a session (one sign-in and its refreshes) ends after this long without a refresh, and the frontend
    # signs out after this long without input (automatic logoff); and this long after its sign-in, however used
    session_idle_minutes: float = Field(default=15, gt=0)
    session_max_hours: float = Field(default=12, gt=0)
    # an accepted token is trusted again for this long without the database (0: never): a token revoked or an
    # account disabled by another replica is refused within it; this replica's own changes apply at once
    authentication_cache_seconds: float = Field(default=1.0, ge=0, le=1)

    # failed-login throttling: per account name + client address (locked for LOGIN_LOCKOUT_SECONDS after
    # LOGIN_MAX_FAILURES), per client address whatever the names, and per account name from every address
    # (after LOGIN_ACCOUNT_FREE_FAILURES each attempt waits twice as long, up to LOGIN_BACKOFF_MAX_SECONDS)
    login_max_failures: int = 5
    login_lockout_seconds: int = 300
    login_max_failures_per_address: int = Field(default=100, ge=1)
    login_account_free_failures: int = Field(default=10, ge=1)
    login_backoff_max_seconds: int = Field(default=60, ge=1)
    # unauthenticated failures of one kind from one address written to the audit trail one by one each
    # minute; past that only the 100th, 1000th ... with the count so far
    audit_failures_in_full_per_minute: int = Field(default=20, ge=1)
    # proxies whose X-Forwarded-For names the client (addresses or networks, comma-separated, e.g. the
    # frontend's nginx); a request from anywhere else is taken from its own address
    trusted_proxies: Annotated[list[str], NoDecode] = []

    inference_url: str = "http://127.0.0.1:8001"
    inference_timeout_seconds: float = 30.0
    # the inference service's INFERENCE_REPOSITORY_TOKEN: sent on its repository calls (index)
    inference_repository_token: str | None = None
    # The model that tells what an image shows (its labels: chest_xray, chest_ct, other); it runs before every
    # classifier, and the image goes to the classifier whose intended use names that kind (README: intended use).
    image_kind_model: str = "image-kind"
    model_catalog_ttl_seconds: float = 60.0  # how long the deployed models' cards are kept before they are read again
    # a patient outside the population a model was trained on (e.g. an adult for a pediatric model):
    # refused (422 population_mismatch) when true, else classified with a warning
    refuse_other_population: bool = False

    max_upload_bytes: int = 20 * 1024 * 1024
    # the most pixels an image may have (a DICOM's Rows x Columns x frames), read from its header before
    # decoding: /classify refuses more, so every stored image can be previewed; /preview renders no more
    max_image_pixels: int = Field(default=25_000_000, ge=1)
    # images decoded at once (DICOM previews; ~6 bytes a pixel each); a request past
    # them waits up to IMAGE_DECODE_WAIT_SECONDS, then gets 503 with Retry-After
    image_decode_slots: int = Field(default=2, ge=1)
    image_decode_wait_seconds: float = Field(default=10.0, ge=0)
    # Argon2 password checks at once (19 MiB each, `security.py`; unknown accounts included); a sign-in
    # past them waits up to PASSWORD_CHECK_WAIT_SECONDS, then gets 503 with Retry-After
    password_check_slots: int = Field(default=4, ge=1)
    password_check_wait_seconds: float = Field(default=2.0, ge=0)
    # a DICOM whose pixels may carry burned-in text (BurnedInAnnotation YES; absent for modalities that
    # burn text in, see `dicom.BURNS_IN_TEXT`): refused (422 burned_in_annotation) or stored with a warning
    burned_in_annotation: Literal["refuse", "warn"] = "refuse"

    # requests per minute per signed-in user or API client; 0 turns the limit off
    rate_limit_per_minute: int = 600
    # Redis, shared by every replica for the request limit and the sign-in throttle (e.g.
    # redis://redis:6379/0); without it each replica counts requests alone and sign-in failures are
    # counted in the database. REDIS_PASSWORD is its password (kept out of the URL, like PGPASSWORD).
    redis_url: str | None = None
    redis_password: str | None = None
    rate_limit_redis_url: str | None = None  # the former name of REDIS_URL, still read when REDIS_URL is not set
    # rows at most in one CSV export (GET /results/export.csv, GET /audit/export.csv)
    export_max_rows: int = Field(default=100_000, ge=1)

    cors_origins: Annotated[list[str], NoDecode] = []  # the frontend's origin(s), comma-separated
    # models run after another model's answer in the same request, as their card says (`follows`: e.g. a
    # severity grade after a COVID-19 finding), comma-separated. None by default: such a model is run only
    # once its held-out figures justify showing its answer to clinicians (docs/operations.md §5)
    followup_models: Annotated[list[str], NoDecode] = []
    log_format: Literal["json", "text"] = "json"
    # keys the pseudonyms: the mapping of DICOM UIDs to their replacements and the stored accession numbers
    # (HMAC). Never the JWT secret, so rotating that one changes no pseudonym; required outside development
    deidentification_uid_secret: str = ""
    retry_after_seconds: int = 5
    # the API's documentation pages (/docs/, /redoc/), served from the gateway's own assets; unset: on in
    # development only. Without them /openapi.json answers only signed-in callers
    api_docs: bool | None = None

    @property
    def docs_served(self) -> bool:
        return self.environment == "development" if self.api_docs is None else self.api_docs

    @field_validator("cors_origins", "trusted_proxies", "followup_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [origin.strip() for origin in value.split(",") if origin.strip()] if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> "Settings":
        if self.environment == "development":
            return self
        if len(self.jwt_secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET must be set to at least {MIN_SECRET_LENGTH} characters outside development")
        if (
            len(self.deidentification_uid_secret) < MIN_SECRET_LENGTH
            or self.deidentification_uid_secret == self.jwt_secret
        ):
            raise ValueError(
                f"DEIDENTIFICATION_UID_SECRET must be set to at least {MIN_SECRET_LENGTH} characters, other than"
                " JWT_SECRET, outside development"
            )
        return self

    @model_validator(mode="after")
    def _development_secret(self) -> "Settings":
        if not self.jwt_secret:
            self.jwt_secret = secrets.token_urlsafe(48)  # per process: tokens end with the process
        self.deidentification_uid_secret = self.deidentification_uid_secret or secrets.token_urlsafe(48)
        self.redis_url = self.redis_url or self.rate_limit_redis_url
        return self


@lru_cache
def settings_from_environment() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
