"""Who is calling: a signed-in user or an API client, behind one type."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gateway.models import DEFAULT_ORGANISATION_ID, ApiClient, User

PrincipalKind = Literal["user", "client"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: uuid.UUID
    name: str
    role: str
    is_active: bool
    created_at: datetime
    must_change_password: bool = False  # a user whose password an administrator reset
    organisation_id: uuid.UUID = DEFAULT_ORGANISATION_ID  # whose results it sees

    @classmethod
    def of(cls, account: User | ApiClient) -> Principal:
        if isinstance(account, ApiClient):
            return cls(
                "client",
                account.id,
                account.name,
                account.role,
                account.is_active,
                account.created_at,
                organisation_id=account.organisation_id,
            )
        return cls(
            "user",
            account.id,
            account.username,
            account.role,
            account.is_active,
            account.created_at,
            bool(account.must_change_password),
            account.organisation_id,
        )

    @property
    def is_client(self) -> bool:
        return self.kind == "client"


@dataclass(frozen=True)
class RequestContext:
    """Where a request came from, for the audit trail."""

    ip: str | None
    request_id: str | None
