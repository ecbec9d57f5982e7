"""The intended-use check on real DICOM headers: what a model accepts, refuses and warns about."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from cxr_model.card import ModelCard
from cxr_model.intended_use import ImageFacts, age_band, age_in_years, assess

REPO_ROOT = Path(__file__).resolve().parents[2]
CARD = ModelCard.read(REPO_ROOT / "models" / "pneumonia-xray" / "2")
USE = CARD.intended_use


def chest_xray(**changes) -> ImageFacts:
    facts = {
        "modality": "CR",
        "body_part": "CHEST",
        "view_position": "PA",
        "image_type": ["ORIGINAL", "PRIMARY"],
        "photometric_interpretation": "MONOCHROME1",
        "age_years": 3.0,
        "width": 1841,
        "height": 1955,
        "image_kind": "chest_xray",
    }
    return ImageFacts(**(facts | changes))


def test_the_committed_model_states_its_intended_use():
    assert USE is not None and USE.image_kind == "chest_xray" and "CHEST" in USE.body_parts
    assert USE.population.min_age_years == 1 and USE.population.max_age_years == 5
    assert USE.known_limits


def test_a_pediatric_frontal_chest_radiograph_is_accepted():
    assessment = assess(chest_xray(), USE)
    assert assessment.accepted and assessment.warnings == [] and assessment.age_band == "1-5"


@pytest.mark.parametrize(
    ("changes", "code", "found"),
    [
        ({"modality": "MR"}, "unsupported_modality", "MR"),
        ({"modality": "US"}, "unsupported_modality", "US"),
        ({"body_part": "EXTREMITY"}, "unsupported_body_part", "EXTREMITY"),
        ({"view_position": "LL"}, "unsupported_view", "LL"),
        ({"image_type": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, "unsupported_image_type", "ORIGINAL\\PRIMARY\\LOCALIZER"),
        ({"photometric_interpretation": "RGB"}, "unsupported_photometric_interpretation", "RGB"),
        ({"width": 64, "height": 64}, "image_too_small", "64x64"),
        ({"image_kind": "chest_ct"}, "unsupported_image_kind", "chest_ct"),
    ],
)
def test_an_image_outside_the_intended_use_is_refused_naming_what_was_found(changes, code, found):
    [refusal] = assess(chest_xray(**changes), USE).refusals
    assert (refusal.code, refusal.found) == (code, found)
    assert found in refusal.detail


def test_missing_tags_are_left_to_the_image_kind_model():
    facts = ImageFacts(image_kind="chest_xray", width=256, height=256)
    assert assess(facts, USE).accepted


def test_an_adult_is_warned_about_or_refused_by_setting():
    adult = chest_xray(age_years=45.0)
    warned = assess(adult, USE)
    assert warned.accepted and [w.code for w in warned.warnings] == ["population_mismatch"]
    assert warned.age_band == "18-64" and "children" in warned.warnings[0].detail
    refused = assess(adult, USE, refuse_other_population=True)
    assert [r.code for r in refused.refusals] == ["population_mismatch"]


@pytest.mark.parametrize(
    ("age", "birth", "study", "years"),
    [("005Y", None, None, 5.0), ("018M", None, None, 1.5), ("", "20200101", "20230101", 3.0), (None, None, None, None)],
)
def test_the_age_comes_from_patient_age_or_the_dates(age, birth, study, years):
    found = age_in_years(age, birth, study)
    assert found == pytest.approx(years, abs=0.01) if years is not None else found is None


def test_age_bands_hide_the_exact_age():
    assert [age_band(a) for a in (0.5, 3, 12, 40, 80)] == ["under 1", "1-5", "6-17", "18-64", "65 and over"]


def test_a_real_hand_radiograph_header_is_refused(tmp_path):
    """pydicom-data's RG3 is a CR of an extremity: a chest model must not see it."""
    import data_store

    dataset = pydicom.dcmread(Path(data_store.__file__).parent / "data" / "RG3_UNCR.dcm", stop_before_pixels=True)
    facts = ImageFacts(modality=dataset.Modality, body_part=dataset.BodyPartExamined, image_kind="chest_xray")
    assert [r.code for r in assess(facts, USE).refusals] == ["unsupported_body_part"]
