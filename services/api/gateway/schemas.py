"""Pydantic schemas: what the API accepts and returns (separate from the table models)."""

import uuid
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["admin", "clinician"]
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=12, max_length=256)
    role: Role = "clinician"


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    role: Role
    is_active: bool
    created_at: datetime

    _utc = field_validator("created_at")(_as_utc)


class ImageOut(BaseModel):
    id: uuid.UUID
    content_type: str
    size_bytes: int
    sha256: str
    url: str


class ResultOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: uuid.UUID
    created_at: datetime
    created_by: str
    label: str
    probabilities: dict[str, float]
    threshold: float | None
    model_name: str
    model_version: str
    image: ImageOut

    _utc = field_validator("created_at")(_as_utc)


class ResultPage(BaseModel):
    items: list[ResultOut]
    total: int
    limit: int
    offset: int


class Problem(BaseModel):
    """RFC 9457 problem details, with a machine-readable `code`."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
