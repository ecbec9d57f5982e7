"""Gateway settings, from the environment."""

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator, model_validator
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
    default_model: str = "pneumonia-xray"

    max_upload_bytes: int = 20 * 1024 * 1024

    # requests per minute per signed-in user or API client; 0 turns the limit off
    rate_limit_per_minute: int = 600
    rate_limit_redis_url: str | None = None  # shared by all replicas when set; per process otherwise

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
        return self


@lru_cache
def settings_from_environment() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
