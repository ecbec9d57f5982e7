"""Settings refuse development defaults outside development, each process asking only for what it uses."""

import pytest
from pydantic import ValidationError

from gateway.settings import ReaperSettings, Settings

S3_KEYS = {"s3_access_key_id": "gateway", "s3_secret_access_key": "s" * 40}


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    for name in ("ENVIRONMENT", "JWT_SECRET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "STORAGE_BACKEND"):
        monkeypatch.delenv(name, raising=False)


def test_the_gateway_needs_a_long_jwt_secret_and_s3_keys_outside_development():
    with pytest.raises(ValidationError, match="JWT_SECRET must be set to at least 32 characters"):
        Settings(jwt_secret="short", **S3_KEYS)
    with pytest.raises(ValidationError, match="S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set"):
        Settings(jwt_secret="j" * 40)
    assert Settings(jwt_secret="j" * 40, **S3_KEYS).environment == "production"


def test_development_generates_a_per_process_secret():
    first, second = Settings(environment="development"), Settings(environment="development")
    assert len(first.jwt_secret) >= 32 and first.jwt_secret != second.jwt_secret


def test_the_reaper_needs_the_store_keys_but_no_token_secret():
    with pytest.raises(ValidationError, match="S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set"):
        ReaperSettings()
    settings = ReaperSettings(**S3_KEYS)
    assert not hasattr(settings, "jwt_secret") and settings.storage_backend == "s3"
    assert ReaperSettings(storage_backend="local").storage_backend == "local"
