"""The history page: filters (result, date range, model, unusual images), sorting, empty state."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from e2e_steps import ADULT_CARD, DEFAULT_CARD, FINDINGS, expect, go_to, history_row, sign_in_as_admin

PEDIATRIC = {"model": "pneumonia-xray"}  # a JPEG states no age: without this the adult model answers


@pytest.fixture(scope="module")
def both_labels_classified(admin_client, sample_xrays):
    """At least one result per label, classified through the API (children's X-rays, by the pediatric model)."""
    for label in ("normal", "pneumonia"):
        for path in sample_xrays[label][:2]:
            response = admin_client.post("/classify", files={"file": (path.name, path.read_bytes())}, data=PEDIATRIC)
            assert response.status_code == 201, response.text


def total(admin_client, **filters) -> int:
    return admin_client.get("/results", params={"limit": 1, **filters}).json()["total"]


def apply(page, button: str = "Apply filters") -> dict:
    """Clicks the button and returns the page of results the gateway sent."""
    with page.expect_response(lambda response: "/api/results?" in response.url) as answer:
        page.locator("#history").get_by_role("button", name=button).click()
    return answer.value.json()


def shown_findings(page) -> list[str]:
    return page.locator("#history tbody tr .tag:not(.tag--warning)").all_inner_texts()


def test_filter_the_history_by_result_date_and_model(page, gateway, admin_client, both_labels_classified):
    sign_in_as_admin(page, gateway)
    go_to(page, "History")
    history = page.locator("#history")
    expect(history.locator("tbody tr").first).to_be_visible()

    history.get_by_label("Result").select_option(label=FINDINGS["normal"])
    normals = apply(page)
    assert normals["total"] == total(admin_client, label="normal") > 0
    expect(history.locator("tbody tr")).to_have_count(len(normals["items"]))
    # both X-ray models have the label "normal", each with its own words for it
    normal_words = {card.describe("normal").finding for card in (DEFAULT_CARD, ADULT_CARD)}
    assert set(shown_findings(page)) <= normal_words and shown_findings(page)

    today = date.today().isoformat()
    history.get_by_label("From", exact=True).fill(today)
    history.get_by_label("To", exact=True).fill(today)
    history.get_by_label("Model").fill(PEDIATRIC["model"])
    # all classified today; other tests' images may have gone to the adult model
    pediatric_normals = apply(page)
    assert pediatric_normals["total"] == total(admin_client, label="normal", model=PEDIATRIC["model"]) > 0
    assert {item["model_name"] for item in pediatric_normals["items"]} == {PEDIATRIC["model"]}
    expect(history.locator("tbody tr")).to_have_count(len(pediatric_normals["items"]))
    history.get_by_label("Model").fill("no-such-model")
    assert apply(page)["total"] == 0
    expect(history.get_by_text("No results match these filters.")).to_be_visible()
    history.get_by_label("Model").fill("")

    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    history.get_by_label("From", exact=True).fill(tomorrow)
    history.get_by_label("To", exact=True).fill(tomorrow)
    assert apply(page)["total"] == 0
    expect(history.get_by_text("No results match these filters.")).to_be_visible()
    expect(history.get_by_role("table")).to_be_hidden()

    everything = apply(page, "Clear")
    assert everything["total"] == total(admin_client)
    expect(history.locator("tbody tr")).to_have_count(len(everything["items"]))
    expect(history.get_by_label("Result")).to_have_value("")


def test_filter_the_history_to_unusual_images(page, gateway, admin_client, both_labels_classified, data_dir):
    # an adult's chest X-ray from another hospital, sent to the pediatric model: it flags it as unusual
    adult = (data_dir / "adult-cxr" / "nih" / "normal" / "00001308_002.png").read_bytes()
    unusual = admin_client.post("/classify", files={"file": ("adult.png", adult)}, data=PEDIATRIC).json()
    assert unusual["ood"]["flagged"] is True
    sign_in_as_admin(page, gateway)
    go_to(page, "History")
    history = page.locator("#history")
    expect(history_row(page, unusual["id"]).get_by_text("Unusual image")).to_be_visible()

    history.get_by_label("Image check").select_option(label="Unusual images only")
    flagged = apply(page)

    assert flagged["total"] == total(admin_client, ood="true") > 0
    assert all(item["ood"] for item in flagged["items"])
    rows = history.locator("tbody tr")
    expect(rows).to_have_count(len(flagged["items"]))
    expect(rows.filter(has_not_text="Unusual image")).to_have_count(0)
    history.get_by_label("Image check").select_option(label="Typical images only")
    typical = apply(page)
    assert typical["total"] == total(admin_client, ood="false") > 0
    expect(history_row(page, unusual["id"])).to_have_count(0)
    apply(page, "Clear")
    expect(history.get_by_label("Image check")).to_have_value("")


def sort_by(page, header) -> list[str]:
    """Clicks the column's sort button and returns the labels of the page of results the gateway sent."""
    with page.expect_response(lambda response: "/api/results?" in response.url) as answer:
        header.get_by_role("button").click()
    return [item["label"] for item in answer.value.json()["items"]]


def test_sort_the_history_by_result(page, gateway, both_labels_classified):
    sign_in_as_admin(page, gateway)
    go_to(page, "History")
    history = page.locator("#history")
    time_header = history.get_by_role("columnheader", name="Time")
    result_header = history.get_by_role("columnheader", name="Result")
    expect(time_header).to_have_attribute("aria-sort", "descending")  # newest first
    # the session's history holds other models' results too (covid-ct's "covid" sorts before "normal")
    history.get_by_label("Model").fill(PEDIATRIC["model"])
    apply(page)

    ascending = sort_by(page, result_header)
    expect(result_header).to_have_attribute("aria-sort", "ascending")
    assert ascending == sorted(ascending) and ascending[0] == "normal"
    expect(history.locator("tbody tr").first).to_contain_text(FINDINGS["normal"])

    descending = sort_by(page, result_header)
    expect(result_header).to_have_attribute("aria-sort", "descending")
    assert descending == sorted(descending, reverse=True) and descending[0] == "pneumonia"
    expect(history.locator("tbody tr").first).to_contain_text(FINDINGS["pneumonia"])
    expect(time_header).to_have_attribute("aria-sort", "none")
