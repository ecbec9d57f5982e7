"""Settings refuse development defaults outside development, each process asking only for what it uses."""

import pytest
from pydantic import ValidationError

from gateway.settings import ReaperSettings, Settings

S3_KEYS = {"s3_access_key_id": "gateway", "s3_secret_access_key": "s" * 40}


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    for name in ("ENVIRONMENT", "JWT_SECRET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "STORAGE_BACKEND",
                 "DEIDENTIFICATION_UID_SECRET", "TRUSTED_PROXIES"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_the_gateway_needs_a_long_jwt_secret_and_s3_keys_outside_development():
    with pytest.raises(ValidationError, match="JWT_SECRET must be set to at least 32 characters"):
        Settings(jwt_secret="short", **S3_KEYS)
    with pytest.raises(ValidationError, match="S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set"):
        Settings(jwt_secret="j" * 40, deidentification_uid_secret="d" * 40)
    assert Settings(jwt_secret="j" * 40, deidentification_uid_secret="d" * 40, **S3_KEYS).environment == "production"


def test_pseudonyms_are_keyed_apart_from_tokens_so_rotating_the_jwt_secret_keeps_them():
    for missing_or_shared in ({}, {"deidentification_uid_secret": "short"}, {"deidentification_uid_secret": "j" * 40}):
        with pytest.raises(ValidationError, match="DEIDENTIFICATION_UID_SECRET must be set"):
            Settings(jwt_secret="j" * 40, **missing_or_shared, **S3_KEYS)
    before = Settings(jwt_secret="j" * 40, deidentification_uid_secret="d" * 40, **S3_KEYS)
    rotated = Settings(jwt_secret="k" * 40, deidentification_uid_secret="d" * 40, **S3_KEYS)
    assert rotated.deidentification_uid_secret == before.deidentification_uid_secret
    development = Settings(environment="development")  # never falls back to the JWT secret
    assert development.deidentification_uid_secret != development.jwt_secret


def test_trusted_proxies_are_addresses_or_networks():
    keys = {"jwt_secret": "j" * 40, "deidentification_uid_secret": "d" * 40, **S3_KEYS}
    assert Settings(trusted_proxies="10.0.0.0/8, 127.0.0.1", **keys).trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    with pytest.raises(ValidationError):
        Settings(trusted_proxies="nginx", **keys)


def test_development_generates_a_per_process_secret():
    first, second = Settings(environment="development"), Settings(environment="development")
    assert len(first.jwt_secret) >= 32 and first.jwt_secret != second.jwt_secret


def test_the_reaper_needs_the_store_keys_but_no_token_secret():
    with pytest.raises(ValidationError, match="S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set"):
        ReaperSettings()
    settings = ReaperSettings(**S3_KEYS)
    assert not hasattr(settings, "jwt_secret") and settings.storage_backend == "s3"
    assert ReaperSettings(storage_backend="local").storage_backend == "local"
