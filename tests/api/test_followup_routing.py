"""Follow-up models as routing functions: a model whose card says it follows another model's label (the
CT severity model after a COVID-19 finding) is never routed to by image kind, and is picked for exactly
the answers of the model and label it names. The committed cards are the ones checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_model.answer import Classification, ClassInfo
from cxr_model.card import ModelCard
from cxr_model.intended_use import ImageFacts
from gateway import routing
from gateway.catalog import DeployedModel
from gateway.exceptions import OutsideIntendedUse

MODELS = Path(__file__).resolve().parents[2] / "models"


def deployed(name: str) -> DeployedModel:
    card = ModelCard.read(MODELS / name / "1")
    classes = [ClassInfo(label=label, **card.describe(label).model_dump()) for label in card.labels]
    return DeployedModel(name, "1", ["1"], card.task, "", classes, card.intended_use)


COVID, SEVERITY = deployed("covid-ct"), deployed("covid-ct-severity")
MODELS_DEPLOYED = {model.name: model for model in (COVID, SEVERITY)}
CT_SLICE = ImageFacts(image_kind="chest_ct", width=512, height=512)


def answer(model: DeployedModel, label: str) -> Classification:
    probabilities = {item.label: float(item.label == label) for item in model.classes}
    return Classification(
        model_name=model.name, model_version="1", classes=model.classes, label=label, probabilities=probabilities
    )


def test_a_ct_slice_is_routed_to_the_covid_model_never_to_the_model_that_follows_it():
    assert routing.route(CT_SLICE, MODELS_DEPLOYED, None, False).model.name == "covid-ct"
    with pytest.raises(OutsideIntendedUse) as refused:  # the follower alone: no model is made for the kind
        routing.route(CT_SLICE, {"covid-ct-severity": SEVERITY}, None, False)
    assert refused.value.code == "unsupported_image_kind"


def test_the_severity_model_follows_a_covid_answer_only_when_enabled():
    enabled = frozenset({"covid-ct-severity"})
    assert routing.followers(answer(COVID, "covid"), MODELS_DEPLOYED, enabled) == [SEVERITY]
    assert routing.followers(answer(COVID, "non-covid"), MODELS_DEPLOYED, enabled) == []
    assert routing.followers(answer(SEVERITY, "severe"), MODELS_DEPLOYED, enabled) == []
    assert routing.followers(answer(COVID, "covid"), MODELS_DEPLOYED, frozenset()) == []  # FOLLOWUP_MODELS unset


def test_a_named_follow_up_model_still_reads_an_image_made_for_it():
    assert routing.route(CT_SLICE, MODELS_DEPLOYED, SEVERITY, False).model.name == "covid-ct-severity"
