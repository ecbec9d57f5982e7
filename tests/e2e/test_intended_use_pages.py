"""What a model is made for, in the clinician web app (real Chromium, the real gateway and inference
service with the committed image-kind and X-ray models): an image outside the intended use is refused
in plain words, the chest X-ray of a patient neither X-ray model was trained for (aged 6-17) carries a
warning, and every result links to a readable model page (intended use, population, metrics, known limits)."""

from __future__ import annotations

from pathlib import Path

import pydicom
from e2e_steps import (
    ADULT_CARD,
    DEFAULT_CARD,
    SLOW,
    case_of,
    choose_files,
    classify,
    expect,
    go_to,
    history_row,
    sign_in_as_admin,
    wait_until_loaded,
)
from test_contrast import check_contrast

BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"
USE = DEFAULT_CARD.intended_use
ADULT_USE = ADULT_CARD.intended_use


def test_images_outside_the_intended_use_are_refused_in_plain_words(page, gateway, admin_client, data_dir, screenshots):
    mr = BUNDLED / "MR_small.dcm"
    hand = sorted((data_dir / "other-images" / "mednist" / "Hand").glob("*.jpeg"))[0]
    before = admin_client.get("/results", params={"limit": 1}).json()["total"]
    sign_in_as_admin(page, gateway)
    choose_files(page, mr, hand)

    answers = classify(page, expected_answers=2)

    assert [(answer["status"], answer["body"]["code"]) for answer in answers] == [
        (422, "unsupported_modality"),
        (422, "unsupported_image_kind"),
    ], answers
    expect(page.get_by_role("status").filter(has_text="0 of 2 classified; 2 could not be classified.")).to_be_visible()
    # the refusal names the deployed model nearest to the image (one of several, none made for MR)
    mr_refusal = answers[0]["body"]
    *others, last = mr_refusal["accepted"]
    accepted = f"{', '.join(others)} or {last}" if others else last
    mr_alert = case_of(page, mr.name).get_by_role("alert")
    expect(mr_alert).to_have_text(
        f"This image is an MR image (MR); this model reads {accepted} images."
        f" This model is made for: {mr_refusal['input_kind']}."
    )
    expect(case_of(page, mr.name).get_by_text("Not classified", exact=True)).to_be_visible()
    expect(case_of(page, hand.name).get_by_role("alert")).to_have_text(
        "The image check recognised this image as “Other image”, and no model here is made for that kind of image."
    )
    expect(page.locator("#classify .result")).to_have_count(0)
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_disabled()  # not worth sending again
    screenshots(page, "classify-refused-outside-intended-use")
    assert admin_client.get("/results", params={"limit": 1}).json()["total"] == before


def test_a_school_childs_chest_xray_is_classified_with_a_population_warning(
    page, gateway, data_dir, screenshots, tmp_path
):
    """A 10-year-old is in neither X-ray model's population: the nearest (pediatric) one answers, with a warning."""
    dicom_file = tmp_path / "RG1_age_10.dcm"  # CR chest PA
    dataset = pydicom.dcmread(data_dir / "dicom" / "RG1_UNCR.dcm")
    dataset.PatientAge = "010Y"
    dataset.save_as(dicom_file, enforce_file_format=True)
    sign_in_as_admin(page, gateway)
    choose_files(page, dicom_file)

    [answer] = classify(page)

    assert answer["status"] == 201, answer
    result = answer["body"]
    assert [w["code"] for w in result["warnings"]] == ["population_mismatch"] and result["age_band"] == "6-17"
    assert result["model_name"] == DEFAULT_CARD.name
    panel = case_of(page, dicom_file.name).locator("[data-role=result]")
    expect(panel.locator(".warning").first).to_have_text(
        f"Other population: the patient is in the age band 6-17 years, but this model was trained on"
        f" {USE.population.description}. The result may not be reliable for this patient."
    )
    facts = panel.locator(".facts")
    expect(facts).to_contain_text("Age band6-17 years")
    expect(facts).to_contain_text(f"Image kind{result['image_kind']['name']} (")
    wait_until_loaded(page, page.get_by_role("img", name=f"Preview of {dicom_file.name}"))
    screenshots(page, "classify-population-warning")

    go_to(page, "History")
    expect(history_row(page, result["id"]).get_by_text("Other population")).to_be_visible()
    history_row(page, result["id"]).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".warning").first).to_contain_text("Other population")
    expect(dialog.get_by_role("link", name="About this model")).to_be_visible()


def test_every_result_links_to_a_readable_model_page(page, gateway, sample_xrays, screenshots):
    xray = sample_xrays["normal"][0]  # a JPEG states no age: the adult model answers
    sign_in_as_admin(page, gateway)
    choose_files(page, xray)
    [answer] = classify(page)
    assert answer["status"] == 201, answer

    case_of(page, xray.name).get_by_role("link", name="About this model").click()

    model = page.locator("#models")
    expect(page.get_by_role("heading", level=1, name=f"{ADULT_CARD.name} v{ADULT_CARD.version}")).to_be_visible(
        timeout=SLOW
    )
    assert page.url.endswith(f"#/models/{ADULT_CARD.name}")
    expect(model.get_by_role("heading", name="What it is made for")).to_be_visible()
    made_for = model.locator(".facts")
    expect(made_for).to_contain_text(f"Made for{ADULT_USE.input_kind}")
    expect(made_for).to_contain_text("Modalities (DICOM)CR, DX, DR")
    expect(made_for).to_contain_text("Body parts (DICOM)CHEST")
    expect(made_for).to_contain_text(f"Population{ADULT_USE.population.description}")
    expect(made_for).to_contain_text("Ages18 years and over")
    expect(made_for).to_contain_text(f"Minimum resolution{ADULT_USE.min_source_pixels} pixels on the shorter side")
    for label in ADULT_CARD.labels:
        expect(model.locator(".model-classes")).to_contain_text(ADULT_CARD.describe(label).name)
    test_set = model.get_by_role("table").filter(has=page.get_by_text("Test set (held out)"))
    low, high = ADULT_CARD.metrics_ci["test"]["roc_auc"]
    expect(test_set.get_by_role("row", name="ROC AUC")).to_contain_text(
        f"{ADULT_CARD.metrics['test']['roc_auc']:.3f}{low:.3f} – {high:.3f}"
    )
    expect(test_set.get_by_role("row", name="Images")).to_contain_text(str(int(ADULT_CARD.metrics["test"]["n"])))
    expect(test_set.get_by_role("columnheader", name="95% confidence interval")).to_be_visible()
    limits = model.locator(".model-limits li")
    expect(limits).to_have_text(ADULT_USE.known_limits)
    expect(model).to_contain_text("not a diagnosis")
    screenshots(page, "model-page")
    check_contrast(page, "model page")

    go_to(page, "Models")
    summaries = page.locator("#models .model-summary")
    expect(summaries.filter(has_text=ADULT_CARD.name)).to_contain_text(f"Made for {ADULT_USE.input_kind}")
    expect(summaries.filter(has_text="image-kind")).to_contain_text("tells what an image shows")
    summaries.get_by_role("link", name="image-kind v1").click()
    expect(page.get_by_role("heading", level=1, name="image-kind v1")).to_be_visible()
    expect(model).to_contain_text("This model does not classify findings")
    check_contrast(page, "image-kind model page")
