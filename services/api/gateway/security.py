"""Password and client-secret hashing (Argon2id), JWT access tokens (python-jose), refresh tokens."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

from gateway.settings import Settings

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


class InvalidToken(Exception):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    try:
        return _hasher.verify(hashed or _DUMMY_HASH, password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    """A random secret for an API client or a refresh token (256 bits)."""
    return secrets.token_urlsafe(32)


def fingerprint(token: str) -> str:
    """What is stored of a high-entropy token: its SHA-256 (a slow hash adds nothing here)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_access_token(
    subject: str, role: str, kind: str, settings: Settings, session_epoch: int | None = None
) -> tuple[str, int]:
    """A signed token for a user or an API client (`kind`); returns it and its lifetime in seconds.

    A user's token carries the user's session epoch (`gen`): one of an earlier epoch is refused."""
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_minutes)
    claims = {
        "sub": subject,
        "role": role,
        "kind": kind,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if session_epoch:
        claims["gen"] = session_epoch
    token = jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
    return token, int(lifetime.total_seconds())


def decode_access_token(token: str, settings: Settings) -> dict:
    """The token's claims; only our algorithm, issuer and audience, and it must not be expired."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_nbf": True,
                "require_sub": True,
                "require_jti": True,
            },
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    return claims
