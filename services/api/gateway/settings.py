"""Gateway settings, from the environment."""

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
    first_admin_username: str = "admin"
    first_admin_password: str | None = None  # generated and printed once when not given


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

    # failed-login throttling per username + client address
    login_max_failures: int = 5
    login_lockout_seconds: int = 300

    inference_url: str = "http://127.0.0.1:8001"
    inference_timeout_seconds: float = 30.0
    # The model that tells what an image shows (its labels: chest_xray, chest_ct, other); it runs before every
    # classifier, and the image goes to the classifier whose intended use names that kind (README: intended use).
    image_kind_model: str = "image-kind"
    model_catalog_ttl_seconds: float = 60.0  # how long the deployed models' cards are kept before they are read again
    # a patient outside the population a model was trained on (e.g. an adult for a pediatric model):
    # refused (422 population_mismatch) when true, else classified with a warning
    refuse_other_population: bool = False

    max_upload_bytes: int = 20 * 1024 * 1024

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
    log_format: Literal["json", "text"] = "json"
    # keys the mapping of DICOM UIDs to their replacements; the JWT secret when not set
    deidentification_uid_secret: str = ""
    retry_after_seconds: int = 5

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [origin.strip() for origin in value.split(",") if origin.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _no_default_secrets_outside_development(self) -> "Settings":
        if self.environment == "development":
            return self
        if len(self.jwt_secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET must be set to at least {MIN_SECRET_LENGTH} characters outside development")
        return self

    @model_validator(mode="after")
    def _development_secret(self) -> "Settings":
        if not self.jwt_secret:
            self.jwt_secret = secrets.token_urlsafe(48)  # per process: tokens end with the process
        self.deidentification_uid_secret = self.deidentification_uid_secret or self.jwt_secret
        self.redis_url = self.redis_url or self.rate_limit_redis_url
        return self


@lru_cache
def settings_from_environment() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
