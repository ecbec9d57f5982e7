"""Intended use: which images a model is made for, and the check that keeps every other image away from it.

A model card states its intended use (`IntendedUse`); what is known of an image (`ImageFacts`:
DICOM header attributes read before de-identification, its size, and the kind the image-kind
model saw) is checked against it by `assess`, before anything is stored or any classifier runs.
An image outside the intended use is refused with a specific code; an image of another
population than the model was trained on gets a warning (or a refusal, by setting).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

ImageKind = str  # a label of the image-kind model, e.g. "chest_xray"


class Population(BaseModel):
    """Whom the model was trained on."""

    description: str  # in words, for the model page
    min_age_years: float | None = None
    max_age_years: float | None = None

    def includes(self, age_years: float) -> bool:
        low = self.min_age_years if self.min_age_years is not None else float("-inf")
        high = self.max_age_years if self.max_age_years is not None else float("inf")
        return low <= age_years <= high


class FollowUp(BaseModel):
    """A model that is not routed to by image kind but runs after another model, in the same request,
    on the images that model decided as `label` (the severity of what it found)."""

    model: str  # the name of the model it follows
    label: str  # that model's label after which it runs


class IntendedUse(BaseModel):
    image_kind: ImageKind  # the image-kind model's label for the images this model is made for
    input_kind: str  # in words: "frontal projection chest X-ray", "axial chest CT slice"
    modalities: list[str] = Field(min_length=1)  # DICOM Modality values
    body_parts: list[str] = ["CHEST"]  # DICOM BodyPartExamined values
    view_positions: list[str] = []  # DICOM ViewPosition values; empty: any
    photometric_interpretations: list[str] = ["MONOCHROME1", "MONOCHROME2"]
    excluded_image_types: list[str] = ["LOCALIZER"]  # DICOM ImageType values the model never saw
    min_source_pixels: int = Field(default=0, ge=0)  # the shorter side of the image, in pixels
    population: Population
    known_limits: list[str] = []
    follows: FollowUp | None = None  # None: images are routed to it by their kind


class ImageFacts(BaseModel):
    """What is known of one image: from its DICOM header (None when absent or not DICOM) and its pixels."""

    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    image_type: list[str] = []
    photometric_interpretation: str | None = None
    age_years: float | None = None
    width: int | None = None
    height: int | None = None
    image_kind: ImageKind | None = None  # what the image-kind model saw


RefusalCode = Literal[
    "unsupported_image_kind",
    "unsupported_modality",
    "unsupported_body_part",
    "unsupported_view",
    "unsupported_image_type",
    "unsupported_photometric_interpretation",
    "image_too_small",
    "population_mismatch",
    "burned_in_annotation",  # not the model's intended use: the gateway's own rule (a warning, by setting)
]


class Refusal(BaseModel):
    code: RefusalCode
    detail: str  # what was found and what the model accepts
    found: str | None = None
    accepted: list[str] = []


class Assessment(BaseModel):
    refusals: list[Refusal] = []
    warnings: list[Refusal] = []  # population mismatch, when it warns rather than refuses
    age_band: str | None = None  # the only trace of the patient's age that is kept

    @property
    def accepted(self) -> bool:
        return not self.refusals


def assess(facts: ImageFacts, use: IntendedUse, refuse_other_population: bool = False) -> Assessment:
    refusals = [refusal for refusal in _header_refusals(facts, use) if refusal is not None]
    population = _population_mismatch(facts, use)
    if population is not None and refuse_other_population:
        refusals.append(population)
    warnings = [population] if population is not None and not refuse_other_population else []
    return Assessment(refusals=refusals, warnings=warnings, age_band=age_band(facts.age_years))


def _header_refusals(facts: ImageFacts, use: IntendedUse) -> list[Refusal | None]:
    return [
        _not_in("unsupported_image_kind", "image kind", facts.image_kind, [use.image_kind]),
        _not_in("unsupported_modality", "modality", facts.modality, use.modalities),
        _not_in("unsupported_body_part", "body part", facts.body_part, use.body_parts),
        _not_in("unsupported_view", "view position", facts.view_position, use.view_positions),
        _not_in(
            "unsupported_photometric_interpretation",
            "photometric interpretation",
            facts.photometric_interpretation,
            use.photometric_interpretations,
        ),
        _excluded_image_type(facts, use),
        _too_small(facts, use),
    ]


def _not_in(code: RefusalCode, what: str, found: str | None, accepted: list[str]) -> Refusal | None:
    """A refusal when `found` is known and not accepted; an unknown value (a missing tag) is left
    to the image-kind model, and an empty `accepted` list accepts anything."""
    if found is None or not accepted or _normalised(found) in {_normalised(value) for value in accepted}:
        return None
    detail = f"the image's {what} is {found}; this model accepts {', '.join(accepted)}"
    return Refusal(code=code, detail=detail, found=found, accepted=accepted)


def _normalised(value: str) -> str:
    return value.strip().upper()


def _excluded_image_type(facts: ImageFacts, use: IntendedUse) -> Refusal | None:
    excluded = {_normalised(value) for value in use.excluded_image_types}
    found = [value for value in facts.image_type if _normalised(value) in excluded]
    if not found:
        return None
    image_type = "\\".join(facts.image_type)  # as DICOM writes its values
    detail = f"the image type is {image_type}; this model does not accept {', '.join(found)} images"
    return Refusal(code="unsupported_image_type", detail=detail, found=image_type, accepted=[])


def _too_small(facts: ImageFacts, use: IntendedUse) -> Refusal | None:
    if facts.width is None or facts.height is None or min(facts.width, facts.height) >= use.min_source_pixels:
        return None
    detail = (
        f"the image is {facts.width}x{facts.height} pixels; this model needs at least "
        f"{use.min_source_pixels} pixels on the shorter side"
    )
    return Refusal(
        code="image_too_small",
        detail=detail,
        found=f"{facts.width}x{facts.height}",
        accepted=[f">= {use.min_source_pixels}"],
    )


def _population_mismatch(facts: ImageFacts, use: IntendedUse) -> Refusal | None:
    if facts.age_years is None or use.population.includes(facts.age_years):
        return None
    band = age_band(facts.age_years)
    detail = f"the patient is in the age band {band}; this model was trained on {use.population.description}"
    return Refusal(code="population_mismatch", detail=detail, found=band, accepted=[use.population.description])


# Age bands: coarse enough not to identify anyone, fine enough to tell a model's population.
_AGE_BANDS = ((1, "under 1"), (6, "1-5"), (18, "6-17"), (65, "18-64"))


def age_band(age_years: float | None) -> str | None:
    if age_years is None:
        return None
    for upper, band in _AGE_BANDS:
        if age_years < upper:
            return band
    return "65 and over"


_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def age_in_years(patient_age: str | None, birth_date: str | None = None, study_date: str | None = None) -> float | None:
    """The patient's age from PatientAge ("005Y", "018M", "003W", "010D") or, without it, from
    PatientBirthDate and StudyDate (YYYYMMDD); None when neither tells."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", patient_age or "")
    if match:
        return int(match.group(1)) * _AGE_UNITS[match.group(2)]
    born, studied = _dicom_date(birth_date), _dicom_date(study_date)
    if born is None or studied is None or studied < born:
        return None
    return (studied - born).days / 365.25


def _dicom_date(value: str | None) -> date | None:
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])) if value and len(value) >= 8 else None
    except ValueError:
        return None
