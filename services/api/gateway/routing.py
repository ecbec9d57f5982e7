"""The intended-use gate: which deployed model reads an image, and whether any may.

An image is checked against a model's intended use (`cxr_model.intended_use.assess`) before that
model runs: what its DICOM header states (read before de-identification), its size, and the kind
the image-kind model saw in it. Without a model named by the caller the image goes to a model made
for its kind (`choose` picks one when several are); a model the caller names must be made for it.

The rule, in full:
1. a model named: that model, if its intended use accepts the image; else refused with its reasons;
2. else the models whose intended use names the image's kind; of those that accept the image,
   `choose`'s pick; when none accepts, refused with the reasons of the one `choose` picks of them;
3. no model made for the kind: refused `unsupported_image_kind`, after what the DICOM header states
   against the deployed classifier it is nearest to (fewest such reasons), if anything.

A DICOM whose header alone rules out every candidate model is refused before the image-kind model
runs (`screen_header`): the same answer, without the cost of decoding and reading the image.

The reasons are ordered with what the DICOM header states first (modality, body part, view, image
type, photometric interpretation), then the kind, then size and population: a header states what the
image is, where the kind is a model's reading of its pixels, and an image of another kind is refused
for that before its size matters. The first reason is the refusal's `code`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from cxr_model.answer import Classification
from cxr_model.intended_use import Assessment, ImageFacts, IntendedUse, Population, Refusal, assess
from gateway.catalog import DeployedModel, ModelCatalog
from gateway.exceptions import InvalidInput, OutsideIntendedUse
from gateway.intake import Decoding

UNSUPPORTED_IMAGE_KIND = "unsupported_image_kind"
# what a DICOM header states the image is: with no model made for the image's kind, only these are told beside it
HEADER_CODES = frozenset(
    {
        "unsupported_modality",
        "unsupported_body_part",
        "unsupported_view",
        "unsupported_image_type",
        "unsupported_photometric_interpretation",
    }
)
ADULT_AGE_YEARS = 18.0


@dataclass(frozen=True)
class Gate:
    """What the gate needs: the deployed models, the image-kind model's name, the population policy, and
    what an upload may be before it is looked at (`intake`: its pixels, how many are decoded at once, and
    whether a DICOM with burned-in text is refused or warned of)."""

    catalog: ModelCatalog
    image_kind_model: str
    refuse_other_population: bool = False
    decoding: Decoding = field(kw_only=True)
    burned_in_annotation: Literal["refuse", "warn"] = "refuse"
    followup_models: frozenset[str] = frozenset()  # the models `followers` may name (FOLLOWUP_MODELS)


@dataclass(frozen=True)
class Route:
    """The model that reads the image, and its assessment (warnings and age band are kept with the result)."""

    model: DeployedModel
    assessment: Assessment


def route(
    facts: ImageFacts,
    models: Mapping[str, DeployedModel],
    requested: DeployedModel | None,
    refuse_other_population: bool,
    kind_name: str | None = None,
) -> Route:
    """The model for this image; `OutsideIntendedUse` when no model may read it. `kind_name`: the kind in words."""
    if requested is not None:
        return _checked(facts, requested, refuse_other_population)
    classifiers = [model for model in models.values() if _routed_by_kind(model)]
    made_for_kind = [model for model in classifiers if _same(_use(model).image_kind, facts.image_kind)]
    assessed = {model.name: assess(facts, _use(model), refuse_other_population) for model in made_for_kind}
    accepting = [model for model in made_for_kind if assessed[model.name].accepted]
    if accepting:
        chosen = choose(accepting, facts.age_years)
        return Route(chosen, assessed[chosen.name])
    if made_for_kind:
        nearest = choose(made_for_kind, facts.age_years)
        raise OutsideIntendedUse(_ordered(assessed[nearest.name].refusals), nearest.name, _use(nearest).input_kind)
    refusals, closest = _no_model_for_kind(facts, classifiers, refuse_other_population, kind_name)
    raise OutsideIntendedUse(refusals, *((closest.name, _use(closest).input_kind) if closest else ()))


def routes_by_kind(
    facts: ImageFacts,
    models: Mapping[str, DeployedModel],
    requested: DeployedModel | None,
    refuse_other_population: bool,
    kinds: Iterable[str],
) -> dict[str, Route]:
    """`route` for each kind the image may turn out to be, decided before the image-kind model answers, so
    that it and the model its answer picks run in one inference call; a kind no model may read is left out
    (`route` with the kind found then gives the refusal)."""
    routes = {}
    for kind in kinds:
        try:
            routes[kind] = route(
                facts.model_copy(update={"image_kind": kind}), models, requested, refuse_other_population
            )
        except OutsideIntendedUse:
            continue
    return routes


def screen_header(
    facts: ImageFacts,
    models: Mapping[str, DeployedModel],
    requested: DeployedModel | None,
    refuse_other_population: bool,
) -> None:
    """Refuse a DICOM at once when what its header states (with its size and the patient's age) already rules out
    the model named, or every deployed classifier: no model runs for it, not even the image-kind model. Any
    image it lets through still goes through `route`, which decides the same for these reasons."""
    candidates = (
        [requested] if requested is not None else [model for model in models.values() if _routed_by_kind(model)]
    )
    uses = {model.name: model.intended_use for model in candidates if model.intended_use is not None}
    if not uses:
        return  # `route` tells: no intended use, or no classifier at all
    refusals = {name: assess(facts, use, refuse_other_population).refusals for name, use in uses.items()}
    if all(refusals.values()):
        nearest = min(uses, key=lambda name: (_other_kind_of_image(refusals[name]), len(refusals[name]), name))
        raise OutsideIntendedUse(_ordered(refusals[nearest]), nearest, uses[nearest].input_kind)


def followers(
    answer: Classification, models: Mapping[str, DeployedModel], enabled: frozenset[str]
) -> list[DeployedModel]:
    """The `enabled` models whose card says they follow the model that gave `answer` on the label it gave
    (e.g. a severity grade after a COVID-19 finding), by name."""
    return sorted(
        (
            model
            for model in models.values()
            if model.name in enabled
            and model.intended_use is not None
            and (follows := model.intended_use.follows) is not None
            and (follows.model, follows.label) == (answer.model_name, answer.label)
        ),
        key=lambda model: model.name,
    )


def _other_kind_of_image(refusals: list[Refusal]) -> int:
    """How many of a model's refusals say the image is another kind of image altogether (another modality or
    body part), rather than one of its kind the model does not take (a lateral view, a small image): the model
    made for the image's kind is the one whose reasons are told."""
    return sum(refusal.code in ("unsupported_modality", "unsupported_body_part") for refusal in refusals)


def _routed_by_kind(model: DeployedModel) -> bool:
    """A classifier images are routed to by their kind: one with an intended use that follows no other model."""
    return model.intended_use is not None and model.intended_use.follows is None


def choose(models: Iterable[DeployedModel], age_years: float | None) -> DeployedModel:
    """Of several models made for one image: one whose population includes the patient's age (a child's
    image goes to a pediatric model), or with no age known one that serves adults; then the narrowest
    population; then by name."""

    def rank(model: DeployedModel) -> tuple[bool, float, str]:
        population = _use(model).population
        fits = population.includes(age_years) if age_years is not None else _serves_adults(population)
        return (not fits, _span(population), model.name)

    return min(models, key=rank)


def _checked(facts: ImageFacts, model: DeployedModel, refuse_other_population: bool) -> Route:
    if model.intended_use is None:
        detail = f"the model '{model.name}' states no intended use, so no image is sent to it"
        raise InvalidInput("no_intended_use", detail)
    assessment = assess(facts, model.intended_use, refuse_other_population)
    if assessment.refusals:
        raise OutsideIntendedUse(_ordered(assessment.refusals), model.name, model.intended_use.input_kind)
    return Route(model, assessment)


def _no_model_for_kind(
    facts: ImageFacts, classifiers: list[DeployedModel], refuse_other_population: bool, kind_name: str | None
) -> tuple[list[Refusal], DeployedModel | None]:
    kinds = sorted({_use(model).image_kind for model in classifiers})
    found = facts.image_kind or "unknown"
    detail = (
        f"the image is {_kind_words(found, kind_name)}; no deployed model is made for it"
        f" (the deployed models read {', '.join(kinds) if kinds else 'no image'})"
    )
    kind_refusal = Refusal(code=UNSUPPORTED_IMAGE_KIND, detail=detail, found=found, accepted=kinds)
    if not classifiers:
        return [kind_refusal], None
    header_refusals = {
        model.name: [
            refusal
            for refusal in assess(facts, _use(model), refuse_other_population).refusals
            if refusal.code in HEADER_CODES
        ]
        for model in classifiers
    }
    nearest = min(classifiers, key=lambda model: (len(header_refusals[model.name]), model.name))
    return [*header_refusals[nearest.name], kind_refusal], nearest


def _ordered(refusals: list[Refusal]) -> list[Refusal]:
    """What the header states first, then the image kind, then size and population (stable: `assess`'s order
    within each)."""

    def rank(refusal: Refusal) -> int:
        return 0 if refusal.code in HEADER_CODES else 1 if refusal.code == UNSUPPORTED_IMAGE_KIND else 2

    return sorted(refusals, key=rank)


def _use(model: DeployedModel) -> IntendedUse:
    if model.intended_use is None:
        raise ValueError(f"the model {model.name} states no intended use")
    return model.intended_use


def _same(kind: str, other: str | None) -> bool:
    return other is not None and kind.strip().lower() == other.strip().lower()


def _serves_adults(population: Population) -> bool:
    return population.max_age_years is None or population.max_age_years >= ADULT_AGE_YEARS


def _span(population: Population) -> float:
    low = population.min_age_years if population.min_age_years is not None else 0.0
    high = population.max_age_years if population.max_age_years is not None else 150.0
    return high - low


def _kind_words(label: str, name: str | None) -> str:
    return f"{name} ({label})" if name and name.lower() != label.lower() else label
