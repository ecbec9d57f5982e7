"""Sign-in flows: passwords (with refresh tokens), client credentials, refresh rotation, logout.

Every outcome is written to the audit trail (repeated failures aggregated, `audit.record_failure`).
Attempts are throttled per account name and address, per address, and per account name with a
backoff (`ratelimit`: in Redis, shared by every replica, or in the database), counted before the
credentials are checked, and an unknown account costs the same Argon2 verification as a known one.
The address is the client's own (TRUSTED_PROXIES' X-Forwarded-For, see `main`).
What a refused sign-in writes (its audit event, the attempt count, a revoked token family) is
kept: the request's unit of work commits a refusal's records (see `deps.get_session`).

Accounts: changing one's own password, an administrator's reset (which forces a change at the
next sign-in) and enabling or disabling a user each end the user's other sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic

from sqlalchemy.orm import Session

from gateway import audit, crud
from gateway.crud import Account
from gateway.exceptions import Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from gateway.models import ApiClient, RefreshToken, User, as_utc, utcnow
from gateway.principals import Principal, RequestContext
from gateway.ratelimit import LoginThrottle, SignInKeys
from gateway.security import (
    InvalidToken,
    create_access_token,
    decode_access_token,
    fingerprint,
    hash_password,
    needs_rehash,
    new_secret,
    verify_password,
)
from gateway.settings import Settings


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    # people's sessions: the frontend signs out after this long without input, and the session ends
    # this many seconds from now whatever happens (SESSION_IDLE_MINUTES, SESSION_MAX_HOURS)
    idle_timeout: int | None = None
    session_expires_in: int | None = None


# throttling


def _throttle_key(action: str, account_name: str | None, ip: str | None) -> str:
    return hashlib.sha256(f"{action}\0{(account_name or '').lower()}\0{ip or ''}".encode()).hexdigest()


def _sign_in_keys(action: str, account_name: str, ip: str | None) -> SignInKeys:
    return SignInKeys(
        pair=_throttle_key(action, account_name, ip),
        address=_throttle_key(f"{action}:address", None, ip),
        account=_throttle_key(f"{action}:account", account_name, None),
    )


def _too_many(wait: int) -> TooManyRequests:
    return TooManyRequests("too_many_failed_logins", f"too many failed sign-ins; retry in {wait} s", wait)


@dataclass(frozen=True)
class _CredentialCheck(Generic[Account]):
    """How one grant finds its accounts and what it answers when the credentials are wrong."""

    action: str
    find: Callable[[Session, str], Account | None]
    wrong_code: str
    wrong_detail: str


_PASSWORD = _CredentialCheck(
    "auth.login", crud.get_user_by_username, "invalid_credentials", "wrong username or password"
)
_CLIENT = _CredentialCheck(
    "auth.client_token", crud.get_client_by_client_id, "invalid_client", "wrong client id or secret"
)


def _authenticate(
    session: Session,
    throttle: LoginThrottle,
    context: RequestContext,
    check: _CredentialCheck[Account],
    name: str,
    secret: str,
) -> Account:
    """The active account with this name and secret; throttled per name and address, audited either way.

    An unknown name costs the same Argon2 verification as a known one, so timing does not tell them apart.
    """
    keys = _sign_in_keys(check.action, name, context.ip)
    if wait := throttle.attempt(session, keys):
        audit.record_failure(session, context, check.action, "denied", actor_name=name, detail="too many failures")
        raise _too_many(wait)
    account = check.find(session, name)
    verified = verify_password(secret, account.credential_hash if account else None)
    if account is None or not verified or not account.is_active:
        audit.record_failure(
            session, context, check.action, "failure", actor_name=name, detail="wrong credentials or disabled"
        )
        raise Unauthenticated(check.wrong_code, check.wrong_detail)
    throttle.succeeded(session, keys)
    if needs_rehash(account.credential_hash):
        account.credential_hash = hash_password(secret)
    audit.record(session, context, check.action, "success", Principal.of(account))
    return account


def _issue_for_user(
    session: Session, user: User, settings: Settings, continued: RefreshToken | None = None
) -> IssuedTokens:
    """Tokens for a new session, or for the one `continued` (its refresh token just used): a refresh token
    lasts SESSION_IDLE_MINUTES past its access token (while that one is valid the gateway sees no refresh
    however active the user is; the web app signs out after SESSION_IDLE_MINUTES without input), and
    never past SESSION_MAX_HOURS after the sign-in (nor REFRESH_TOKEN_DAYS)."""
    access, expires_in = create_access_token(str(user.id), user.role, "user", settings, user.session_epoch)
    refresh = new_secret()
    now = utcnow()
    started = as_utc(continued.session_started_at) if continued and continued.session_started_at else now
    session_ends = started + timedelta(hours=settings.session_max_hours)
    idle = timedelta(minutes=settings.session_idle_minutes)
    unused = timedelta(minutes=settings.access_token_minutes) + idle
    expires_at = min(now + timedelta(days=settings.refresh_token_days), now + unused, session_ends)
    crud.add_refresh_token(
        session,
        RefreshToken(
            token_hash=fingerprint(refresh),
            family_id=continued.family_id if continued else uuid.uuid4(),
            user_id=user.id,
            expires_at=expires_at,
            session_started_at=started,
        ),
    )
    return IssuedTokens(
        access,
        expires_in,
        refresh,
        _seconds(expires_at - now),
        _seconds(idle),
        _seconds(session_ends - now),
    )


def _seconds(span: timedelta) -> int:
    return max(0, int(span.total_seconds()))


def login_with_password(
    session: Session,
    settings: Settings,
    throttle: LoginThrottle,
    context: RequestContext,
    username: str,
    password: str,
) -> IssuedTokens:
    """The password grant: an access token and a refresh token that starts a new family."""
    user = _authenticate(session, throttle, context, _PASSWORD, username, password)
    return _issue_for_user(session, user, settings)


def login_with_client_credentials(
    session: Session,
    settings: Settings,
    throttle: LoginThrottle,
    context: RequestContext,
    client_id: str,
    secret: str,
) -> IssuedTokens:
    """The client-credentials grant: an access token only (a client just asks again)."""
    client = _authenticate(session, throttle, context, _CLIENT, client_id, secret)
    access, expires_in = create_access_token(str(client.id), client.role, "client", settings)
    return IssuedTokens(access, expires_in)


def create_client(session: Session, name: str, organisation_id: uuid.UUID) -> tuple[ApiClient, str]:
    """A new API client of an organisation and its secret, which is shown this once and stored only hashed."""
    secret = new_secret()
    client = ApiClient(
        client_id=f"cxr-{secrets.token_hex(8)}",
        name=name,
        hashed_secret=hash_password(secret),
        role="service",
        organisation_id=organisation_id,
    )
    return crud.add_client(session, client), secret


def rotate_client_secret(session: Session, client: ApiClient) -> str:
    secret = new_secret()
    crud.set_client_secret(session, client, hash_password(secret))
    return secret


# passwords and sessions


def end_sessions(session: Session, user: User) -> None:
    """Sign the user out everywhere: refresh tokens revoked, access tokens issued until now refused."""
    crud.revoke_user_refresh_tokens(session, user.id)
    user.session_epoch = (user.session_epoch or 0) + 1
    session.flush()


def change_own_password(
    session: Session,
    settings: Settings,
    throttle: LoginThrottle,
    context: RequestContext,
    principal: Principal,
    current_password: str,
    new_password: str,
) -> IssuedTokens:
    """Set a new password after checking the current one (throttled like a sign-in, so a stolen token
    cannot guess it); every other session ends, and this one goes on with the tokens returned."""
    action, target = "user.password_change", f"user:{principal.id}"
    user = None if principal.is_client else crud.get_user(session, principal.id)
    if user is None:
        audit.record(session, context, action, "denied", principal, target, detail="not a user")
        raise Forbidden("not_a_user", "API clients have no password; an administrator replaces their secret")
    keys = _sign_in_keys(action, principal.name, context.ip)
    if wait := throttle.attempt(session, keys):
        audit.record(session, context, action, "denied", principal, target, detail="too many failures")
        raise _too_many(wait)
    if not verify_password(current_password, user.hashed_password):
        audit.record(session, context, action, "failure", principal, target, detail="wrong current password")
        raise Forbidden("wrong_password", "the current password is not correct")
    throttle.succeeded(session, keys)
    if current_password == new_password:
        audit.record(session, context, action, "failure", principal, target, detail="password_unchanged")
        raise InvalidInput("password_unchanged", "the new password must differ from the current one")
    user.hashed_password = hash_password(new_password)
    user.must_change_password = False
    end_sessions(session, user)
    audit.record(session, context, action, "success", principal, target)
    return _issue_for_user(session, user, settings)


def reset_password(session: Session, user: User, password: str | None) -> str:
    """An administrator's reset: a temporary password (the given one, or a generated one), to be
    changed at the next sign-in; the user's sessions end. Returns the temporary password."""
    temporary = password or secrets.token_urlsafe(12)
    user.hashed_password = hash_password(temporary)
    user.must_change_password = True
    end_sessions(session, user)
    return temporary


def set_user_active(session: Session, user: User, active: bool) -> User:
    """Enable or disable a user; either way the sessions from before end (none comes back on enabling)."""
    crud.set_active(session, user, active)
    end_sessions(session, user)
    return user


# refresh and logout


def refresh(session: Session, settings: Settings, context: RequestContext, refresh_token: str) -> IssuedTokens:
    """A new access and refresh token for an unused one; presenting a used one revokes its whole family."""
    stored = crud.get_refresh_token(session, fingerprint(refresh_token))
    user = crud.get_user(session, stored.user_id) if stored else None
    if stored is None or user is None:
        audit.record_failure(session, context, "auth.refresh", "failure", detail="unknown refresh token")
        raise Unauthenticated("invalid_refresh_token", "the refresh token is not valid")
    actor = Principal.of(user)
    if stored.revoked_at or stored.used_at or not crud.mark_refresh_token_used(session, stored):
        crud.revoke_refresh_family(session, stored.family_id)
        audit.record(
            session, context, "auth.refresh", "denied", actor, detail="refresh token reused or revoked; family revoked"
        )
        raise Unauthenticated("refresh_token_reused", "the refresh token was already used or revoked; sign in again")
    if as_utc(stored.expires_at) <= utcnow() or not user.is_active:
        audit.record(session, context, "auth.refresh", "failure", actor, detail="expired or account disabled")
        raise Unauthenticated("invalid_refresh_token", "the refresh token has expired or the account is disabled")
    audit.record(session, context, "auth.refresh", "success", actor)
    return _issue_for_user(session, user, settings, stored)


def logout(
    session: Session, context: RequestContext, principal: Principal, claims: dict[str, Any], refresh_token: str | None
) -> None:
    """Revokes the presented access token until it expires, and the refresh token's family if given."""
    crud.revoke_access_token(session, claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))
    stored = crud.get_refresh_token(session, fingerprint(refresh_token)) if refresh_token else None
    if stored and stored.user_id == principal.id:
        crud.revoke_refresh_family(session, stored.family_id)
    audit.record(session, context, "auth.logout", "success", principal)


# access tokens


def authenticate_token(session: Session, settings: Settings, token: str | None) -> tuple[Principal, dict[str, Any]]:
    """The active principal behind a valid, unrevoked access token, and the token's claims."""
    if not token:
        raise Unauthenticated("not_authenticated", "a bearer token is required")
    try:
        claims = decode_access_token(token, settings)
        subject = uuid.UUID(claims["sub"])
    except (InvalidToken, ValueError) as exc:
        raise Unauthenticated("not_authenticated", f"the token is not valid: {exc}") from exc
    if crud.is_access_token_revoked(session, claims["jti"]):
        raise Unauthenticated("not_authenticated", "the token has been revoked")
    account = crud.get_client(session, subject) if claims.get("kind") == "client" else crud.get_user(session, subject)
    if account is None or not account.is_active:
        raise Unauthenticated("not_authenticated", "the account does not exist or is disabled")
    if isinstance(account, User) and claims.get("gen", 0) != account.session_epoch:
        raise Unauthenticated("not_authenticated", "the session has ended (password changed or account reset)")
    return Principal.of(account), claims
