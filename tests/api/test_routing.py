"""The routing rule and the model catalog, as functions: which deployed model an image goes to, which
reason a refusal names first, and how the catalog reads and keeps the inference service's cards.

The intended uses are the committed model's and variants of it (a pediatric and an adult chest X-ray
model, a chest CT model); the end-to-end matrix over real files is in test_intended_use_gate.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_model.card import ModelCard
from cxr_model.intended_use import ImageFacts, IntendedUse, Population
from gateway import routing
from gateway.catalog import DeployedModel, ModelCatalog
from gateway.exceptions import InvalidInput, NotFound, OutsideIntendedUse, Unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ModelCard.read(REPO_ROOT / "models" / "pneumonia-xray" / "2")
assert COMMITTED.intended_use is not None
XRAY_USE = COMMITTED.intended_use
ADULTS = Population(description="adults", min_age_years=18)
CT_USE = IntendedUse(
    image_kind="chest_ct",
    input_kind="axial chest CT slice",
    modalities=["CT"],
    population=ADULTS,
)


def deployed(name: str, use: IntendedUse | None) -> DeployedModel:
    return DeployedModel(name, "1", ["1"], "task", "", [], use)


PEDIATRIC = deployed("pneumonia-xray", XRAY_USE)
ADULT = deployed("adult-xray", XRAY_USE.model_copy(update={"population": ADULTS}))
CT = deployed("covid-ct", CT_USE)
KIND = deployed("image-kind", None)


def catalog(*models: DeployedModel) -> dict[str, DeployedModel]:
    return {model.name: model for model in models}


CHEST_CR = {"modality": "CR", "body_part": "CHEST", "view_position": "PA", "width": 1841, "height": 1955}


def refused(facts: ImageFacts, models: dict[str, DeployedModel], requested: DeployedModel | None = None, **kw):
    with pytest.raises(OutsideIntendedUse) as caught:
        routing.route(facts, models, requested, kw.get("refuse_other_population", False), kw.get("kind_name"))
    return caught.value


def test_a_chest_xray_goes_to_the_xray_model_and_a_chest_ct_to_the_ct_model():
    models = catalog(PEDIATRIC, CT, KIND)
    xray = routing.route(ImageFacts(image_kind="chest_xray", width=256, height=256), models, None, False)
    ct = routing.route(ImageFacts(image_kind="chest_ct", modality="CT", width=512, height=512), models, None, False)
    assert (xray.model.name, ct.model.name) == ("pneumonia-xray", "covid-ct")
    assert xray.assessment.warnings == [] and xray.assessment.age_band is None


def test_of_two_models_for_one_kind_a_child_goes_to_the_pediatric_one_an_adult_or_no_age_to_the_adult_one():
    models = catalog(PEDIATRIC, ADULT, KIND)
    child = ImageFacts(image_kind="chest_xray", age_years=4, **CHEST_CR)
    adult = ImageFacts(image_kind="chest_xray", age_years=64, **CHEST_CR)
    unknown = ImageFacts(image_kind="chest_xray", width=256, height=256)

    assert routing.route(child, models, None, False).model.name == "pneumonia-xray"
    to_adult = routing.route(adult, models, None, False)
    assert to_adult.model.name == "adult-xray" and to_adult.assessment.warnings == []
    assert to_adult.assessment.age_band == "18-64"
    assert routing.route(unknown, models, None, False).model.name == "adult-xray"
    assert routing.choose([PEDIATRIC, ADULT], None) is ADULT and routing.choose([PEDIATRIC, ADULT], 3) is PEDIATRIC


def test_an_adult_for_the_pediatric_model_is_warned_or_refused_by_setting():
    adult = ImageFacts(image_kind="chest_xray", age_years=64, **CHEST_CR)

    warned = routing.route(adult, catalog(PEDIATRIC, KIND), None, False)
    assert [warning.code for warning in warned.assessment.warnings] == ["population_mismatch"]
    assert warned.assessment.warnings[0].found == "18-64" and warned.assessment.age_band == "18-64"

    refusal = refused(adult, catalog(PEDIATRIC, KIND), refuse_other_population=True)
    assert refusal.code == "population_mismatch" and refusal.model == "pneumonia-xray"


def test_the_header_names_the_refusal_before_the_image_kind():
    models = catalog(PEDIATRIC, KIND)
    mr = refused(ImageFacts(image_kind="other", modality="MR", width=64, height=64), models)
    assert mr.code == "unsupported_modality" and mr.refusals[0].found == "MR"
    assert mr.refusals[0].accepted == ["CR", "DX", "DR"]
    assert [r.code for r in mr.refusals] == ["unsupported_modality", "unsupported_image_kind"]  # size: not for others
    assert mr.model == "pneumonia-xray" and mr.input_kind == XRAY_USE.input_kind

    hand = refused(
        ImageFacts(image_kind="chest_xray", modality="CR", body_part="EXTREMITY", view_position="AP"), models
    )
    assert hand.code == "unsupported_body_part" and hand.refusals[0].found == "EXTREMITY"
    lateral = refused(ImageFacts(image_kind="chest_xray", **(CHEST_CR | {"view_position": "LL"})), models)
    assert lateral.code == "unsupported_view" and lateral.refusals[0].accepted == ["PA", "AP"]
    scout = refused(
        ImageFacts(image_kind="chest_xray", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], **CHEST_CR), models
    )
    assert scout.code == "unsupported_image_type" and scout.refusals[0].found == "ORIGINAL\\PRIMARY\\LOCALIZER"
    colour = refused(ImageFacts(image_kind="chest_xray", photometric_interpretation="RGB", **CHEST_CR), models)
    assert colour.code == "unsupported_photometric_interpretation"


def test_an_image_of_a_kind_no_model_is_made_for_is_refused_naming_the_kind():
    models = catalog(PEDIATRIC, KIND)
    hand = refused(ImageFacts(image_kind="other", width=64, height=64), models, kind_name="Other image")
    assert hand.code == "unsupported_image_kind" and [r.code for r in hand.refusals] == ["unsupported_image_kind"]
    assert hand.refusals[0].found == "other" and hand.refusals[0].accepted == ["chest_xray"]
    assert (
        "Other image (other)" in hand.refusals[0].detail
        and "no deployed model is made for it" in hand.refusals[0].detail
    )

    ct_slice = refused(ImageFacts(image_kind="chest_ct", width=512, height=512), models)
    assert ct_slice.code == "unsupported_image_kind" and ct_slice.refusals[0].found == "chest_ct"

    nothing_deployed = refused(ImageFacts(image_kind="chest_xray"), catalog(KIND))
    assert nothing_deployed.code == "unsupported_image_kind" and nothing_deployed.model is None


def test_a_small_chest_xray_is_too_small_and_a_small_other_image_is_of_the_wrong_kind():
    models = catalog(PEDIATRIC, KIND)
    assert refused(ImageFacts(image_kind="chest_xray", width=64, height=64), models).code == "image_too_small"
    named = refused(ImageFacts(image_kind="other", width=64, height=64), models, requested=PEDIATRIC)
    assert [r.code for r in named.refusals] == ["unsupported_image_kind", "image_too_small"]


def test_a_named_model_must_be_made_for_the_image_and_state_an_intended_use():
    models = catalog(PEDIATRIC, CT, KIND)
    assert routing.route(ImageFacts(image_kind="chest_xray"), models, PEDIATRIC, False).model is PEDIATRIC
    assert refused(ImageFacts(image_kind="chest_xray"), models, requested=CT).code == "unsupported_image_kind"
    ct_for_xray = refused(ImageFacts(image_kind="chest_ct", modality="CT"), models, requested=PEDIATRIC)
    assert ct_for_xray.code == "unsupported_modality" and ct_for_xray.model == "pneumonia-xray"
    with pytest.raises(InvalidInput) as caught:
        routing.route(ImageFacts(image_kind="chest_xray"), models, KIND, False)
    assert caught.value.code == "no_intended_use"


def test_the_header_screen_refuses_a_dicom_no_model_may_read_before_any_model_runs():
    models = catalog(PEDIATRIC, KIND)
    with pytest.raises(OutsideIntendedUse) as caught:
        routing.screen_header(ImageFacts(modality="US", width=640, height=480), models, None, False)
    assert caught.value.code == "unsupported_modality" and caught.value.refusals[0].found == "US"
    # what the header leaves open waits for the image-kind model: a chest CR, a DICOM without the tags
    routing.screen_header(ImageFacts(**CHEST_CR), models, None, False)
    routing.screen_header(ImageFacts(width=512, height=512), models, None, False)
    # a CT is refused with no CT model deployed, and passes on to the image-kind model with one
    with pytest.raises(OutsideIntendedUse):
        routing.screen_header(ImageFacts(modality="CT", width=512, height=512), models, None, False)
    routing.screen_header(ImageFacts(modality="CT", width=512, height=512), catalog(PEDIATRIC, CT, KIND), None, False)


class FakeInference:
    """The inference service's repository index and model metadata, as the catalog reads them."""

    def __init__(self, cards: dict[str, dict]):
        self.cards = cards
        self.reads = 0
        self.down = False

    def repository_index(self):
        if self.down:
            raise Unavailable("inference_unavailable", "down")
        self.reads += 1
        return [{"name": name, "version": "1", "state": "READY", "reason": ""} for name in self.cards] + [
            {"name": "broken", "version": "1", "state": "UNAVAILABLE", "reason": "no onnx"}
        ]

    def model_metadata(self, name):
        if name not in self.cards:
            raise NotFound("unknown_model", name)
        return {"name": name, "versions": ["1"], "parameters": self.cards[name]}


def parameters(card: ModelCard) -> dict:
    """The card's fields as the inference service's metadata `parameters` carry them."""
    return card.summary().model_dump(mode="json")


def test_the_catalog_reads_the_cards_keeps_them_and_reads_again_after_its_ttl_or_for_a_new_model():
    now = [0.0]
    inference = FakeInference({"pneumonia-xray": parameters(COMMITTED)})
    models = ModelCatalog(inference, ttl_seconds=60, clock=lambda: now[0])  # type: ignore[arg-type]

    model = models.get("pneumonia-xray")
    assert model.intended_use == XRAY_USE and model.version == "2" and model.metrics == COMMITTED.metrics
    assert [item.name for item in model.classes] == [COMMITTED.describe(label).name for label in COMMITTED.labels]
    assert set(models.models()) == {"pneumonia-xray"} and inference.reads == 1  # UNAVAILABLE versions left out

    inference.cards["image-kind"] = parameters(ModelCard.read(REPO_ROOT / "models" / "image-kind" / "1"))
    now[0] = 1.0
    with pytest.raises(NotFound):  # asked for too soon after the last read: not read again
        models.get("image-kind")
    now[0] = 10.0
    assert models.get("image-kind").intended_use is None and inference.reads == 2  # a miss reads again
    now[0] = 75.0
    models.models()
    assert inference.reads == 3  # the TTL passed

    inference.down = True
    now[0] = 200.0
    assert set(models.models()) == {"pneumonia-xray", "image-kind"}  # kept while the service cannot be read


def test_a_card_that_does_not_conform_is_left_out():
    broken = parameters(COMMITTED) | {"intended_use": {"image_kind": "chest_xray"}}  # no modalities, no population
    models = ModelCatalog(FakeInference({"odd": broken, "pneumonia-xray": parameters(COMMITTED)}), 60)  # type: ignore[arg-type]
    assert set(models.models()) == {"pneumonia-xray"}


def test_the_catalog_without_the_inference_service_is_unavailable():
    inference = FakeInference({})
    inference.down = True
    with pytest.raises(Unavailable):
        ModelCatalog(inference, 60).models()  # type: ignore[arg-type]
