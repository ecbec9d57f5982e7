"""Password and client-secret hashing (Argon2id), JWT access tokens (python-jose), refresh tokens."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

from gateway.concurrency import Slots
from gateway.settings import Settings

# Argon2id with OWASP's recommended parameters (Password Storage Cheat Sheet: 19 MiB, 2 passes, one
# lane). argon2-cffi's default (RFC 9106's second choice) takes 64 MiB a check: ten sign-ins at once were
# 640 MiB, more than a gateway pod has. Hashes made with other parameters still verify with their own.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the user does not exist, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


class _PasswordChecks:
    """The process's bound on password checks running at once (`bound_password_checks` sets it)."""

    slots = Slots(4, 2.0, "sign_in_busy", "too many sign-ins are being checked at once; retry shortly")


def bound_password_checks(count: int, wait_seconds: float) -> None:
    """At most `count` password checks at once in this process, each waiting up to `wait_seconds` for its turn."""
    previous = _PasswordChecks.slots
    _PasswordChecks.slots = Slots(count, wait_seconds, previous.busy_code, previous.busy_detail)


# RFC 9068's media type for JWT access tokens: a token of another type (an ID token, a refresh or a
# signed URL token signed with the same key) is not an access token
ACCESS_TOKEN_TYPE = "at+jwt"
PRINCIPAL_KINDS = ("user", "client")


class InvalidToken(Exception):
    pass


def hash_password(password: str) -> str:
    with _PasswordChecks.slots.held():
        return _hasher.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Whether the password is the hashed one; with no hash (an unknown account) a dummy is checked, in
    the same bounded slots. `Unavailable` (503) when no slot frees up in time."""
    with _PasswordChecks.slots.held():
        try:
            return _hasher.verify(hashed or _DUMMY_HASH, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(hashed: str) -> bool:
    """Whether a stored hash was made with other Argon2 parameters than today's (it is replaced at the
    next sign-in, so that old hashes do not cost more than new ones, nor tell known names apart)."""
    try:
        return _hasher.check_needs_rehash(hashed)
    except InvalidHashError:
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
    token = jwt.encode(
        claims, settings.jwt_secret, algorithm=settings.jwt_algorithm, headers={"typ": ACCESS_TOKEN_TYPE}
    )
    return token, int(lifetime.total_seconds())


def decode_access_token(token: str, settings: Settings) -> dict:
    """The token's claims; only our algorithm, type, issuer, audience and principal kinds, and it must not
    be expired (within the leeway for clocks that differ between replicas)."""
    try:
        if jwt.get_unverified_header(token).get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken(f"the token's type (typ) must be {ACCESS_TOKEN_TYPE}")
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "leeway": settings.jwt_leeway_seconds,
                "require_aud": True,
                "require_iss": True,
                "require_exp": True,
                "require_iat": True,
                "require_nbf": True,
                "require_sub": True,
                "require_jti": True,
            },
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("kind") not in PRINCIPAL_KINDS:
        raise InvalidToken(f"the token's kind must be one of {', '.join(PRINCIPAL_KINDS)}")
    return claims
