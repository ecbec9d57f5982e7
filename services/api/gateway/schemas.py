"""Pydantic schemas: what the API accepts and returns (separate from the table models)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from cxr_model.answer import Classification, ClassInfo, Heatmap
from cxr_model.intended_use import IntendedUse, Refusal
from gateway.catalog import DeployedModel
from gateway.models import Result, as_utc

Role = Literal["admin", "clinician"]
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str | None = None  # password flow only; rotated on every use
    refresh_expires_in: int | None = None
    # password flow only: sign out after this many seconds without input (SESSION_IDLE_MINUTES), and the
    # session ends this many seconds from now however it is used (SESSION_MAX_HOURS)
    idle_timeout: int | None = None
    session_expires_in: int | None = None


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=12, max_length=256)
    role: Role = "clinician"
    organisation_id: uuid.UUID | None = Field(default=None, description="the administrator's own when not given")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    role: Role
    is_active: bool
    must_change_password: bool = False  # an administrator reset the password; changed at the next sign-in
    created_at: datetime
    organisation_id: uuid.UUID  # whose results the user sees

    _utc = field_validator("created_at")(as_utc)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=12, max_length=256)


class PasswordReset(BaseModel):
    """An administrator's reset: the temporary password to give the user, or none to have one generated."""

    password: str | None = Field(default=None, min_length=12, max_length=256)


class PasswordResetOut(BaseModel):
    user: UserOut
    # the generated temporary password, shown this once (null when the administrator chose it)
    temporary_password: str | None


class PrincipalOut(BaseModel):
    """The caller: a user, or an API client (whose `username` is its name)."""

    id: uuid.UUID
    username: str
    role: Literal["admin", "clinician", "service"]
    kind: Literal["user", "client"]
    is_active: bool
    must_change_password: bool = False  # true: only GET /me, POST /me/password and logout answer until it is changed
    created_at: datetime

    _utc = field_validator("created_at")(as_utc)


class ClientCreate(BaseModel):
    name: str = Field(min_length=3, max_length=128)
    organisation_id: uuid.UUID | None = Field(default=None, description="the administrator's own when not given")


class OrganisationCreate(BaseModel):
    name: str = Field(min_length=2, max_length=128)


class OrganisationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime

    _utc = field_validator("created_at")(as_utc)


class ClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_id: str
    name: str
    role: Literal["service"]
    is_active: bool
    created_at: datetime
    organisation_id: uuid.UUID

    _utc = field_validator("created_at")(as_utc)


class ClientWithSecret(ClientOut):
    client_secret: str  # shown once; only its hash is stored


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    occurred_at: datetime
    actor_kind: str | None
    actor_id: str | None
    actor_name: str | None
    action: str
    target: str | None
    outcome: str
    ip: str | None
    request_id: str | None
    detail: str | None

    _utc = field_validator("occurred_at")(as_utc)


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    limit: int
    offset: int


class ImageOut(BaseModel):
    id: uuid.UUID
    content_type: str
    size_bytes: int
    sha256: str
    url: str
    width: int | None = None  # pixels as displayed
    height: int | None = None
    # DICOM only
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None


class ExplanationOut(BaseModel):
    """Where the model looked: its class-activation heatmap, served as a PNG overlay of the whole image."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    method: str
    class_: str = Field(alias="class", description="the class whose activation the heatmap shows")
    heatmap_url: str


class ImageKindOut(BaseModel):
    """What the image-kind model saw in the image before any classifier ran."""

    label: str  # e.g. chest_xray, chest_ct, other
    name: str  # in words, as the image-kind model's card gives them
    probability: float
    model: str  # <name>/<version> of the image-kind model


class ResultOut(Classification):
    """A stored result: the model's answer as it gave it, and the gateway's own fields.

    `explanation` is answered as a link to its overlay (`ExplanationOut`), not as the heatmap's grid.
    `image_kind`, `warnings` and `age_band` are what the intended-use gate saw (null / [] for results
    stored before it).
    """

    id: uuid.UUID
    created_at: datetime
    created_by: str
    image: ImageOut
    accession_number: str | None = Field(
        default=None,
        description="never answered: stored only keyed (HMAC); find results by it with ?accession_number=",
    )
    external_id: str | None = None
    image_kind: ImageKindOut | None = None
    warnings: list[Refusal] = Field(
        default=[], description="e.g. population_mismatch: the patient is outside the model's training population"
    )
    age_band: str | None = Field(default=None, description="the patient's age band the check used (never the age)")

    _utc = field_validator("created_at")(as_utc)

    @field_serializer("explanation")
    def _explanation_link(self, explanation: Heatmap | None) -> ExplanationOut | None:
        if explanation is None:
            return None
        return ExplanationOut(
            method=explanation.method, class_=explanation.class_, heatmap_url=f"/results/{self.id}/heatmap"
        )

    @classmethod
    def of(cls, result: Result, created_by: str | None = None, **extra: Any) -> Self:
        """`created_by`: the submitter's name where the caller knows it (else it is read with the result)."""
        image = result.image
        return cls(
            **dict(result.classification),
            id=result.id,
            created_at=result.created_at,
            created_by=created_by or result.submitter_name,
            image=ImageOut(
                url=f"/results/{result.id}/image",
                **{name: getattr(image, name) for name in ImageOut.model_fields if name != "url"},
            ),
            external_id=result.external_id,
            image_kind=result.image_kind,
            warnings=result.warnings or [],
            age_band=result.age_band,
            **extra,
        )


class Timings(BaseModel):
    """Where the time of one classification went, in milliseconds."""

    gate_ms: float | None = None  # the intended-use check (the image-kind model runs in inference_ms)
    inference_ms: float  # the one inference call: the image-kind model and the model it routes to
    storage_ms: float
    database_ms: float


class ClassifyOut(ResultOut):
    timings: Timings | None = None  # absent when an Idempotency-Key replay returns an earlier result


class ResultPage(BaseModel):
    items: list[ResultOut]
    total: int
    limit: int
    offset: int


class Problem(BaseModel):
    """RFC 9457 problem details, with a machine-readable `code`."""

    type: str  # https://cxr.example/problems/<code>
    title: str
    status: int
    detail: str
    code: str


class IntendedUseProblem(Problem):
    """422 for an image outside the intended use: `code` is the first reason, `found` what the image is,
    `accepted` what the model accepts, `model` the model it was checked against, `refusals` every reason."""

    found: str | None = None
    accepted: list[str] = []
    model: str | None = None
    input_kind: str | None = None  # what that model reads, in words: "frontal projection chest X-ray (PA or AP)"
    image_kind: ImageKindOut | None = None
    refusals: list[Refusal] = []


class ModelOut(BaseModel):
    """A deployed model as its card describes it: for the model page and for choosing `model` on /classify."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str  # the version /classify uses
    versions: list[str]
    role: Literal["classifier", "image_kind"]  # image_kind: the model that tells what an image shows
    task: str
    description: str
    classes: list[ClassInfo]
    intended_use: IntendedUse | None  # null for the image-kind model, which routes images rather than classifying
    metrics: dict[str, dict[str, float]] = Field(
        description="the card's metrics by split, e.g. {test: {roc_auc: 0.97, n: 624}}"
    )
    metrics_ci: dict[str, dict[str, tuple[float, float]]] = Field(
        description="bootstrap 95% confidence intervals [low, high] of the metrics by split (empty: none in the card)"
    )

    @classmethod
    def of(cls, model: DeployedModel, image_kind_model: str) -> Self:
        role = "image_kind" if model.name == image_kind_model else "classifier"
        return cls(role=role, **{name: getattr(model, name) for name in cls.model_fields.keys() - {"role"}})


class InvalidRequestProblem(Problem):
    """The 422 problem: `errors` lists what failed validation (absent when the database refused a value)."""

    errors: list[dict[str, Any]] = []
