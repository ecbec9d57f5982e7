"""A chest CT slice in the clinician web app (real Chromium, the real gateway and inference service with the
committed models): the COVID-19 CT model's finding, and under it the severity model's grade from the same
request, each with its bars and a link to its model page; the result's detail page shows the same."""

from __future__ import annotations

from e2e_steps import case_of, choose_files, classify, expect, go_to, history_row, percent, sign_in_as_admin

COVID_SLICE = "covid-ct-severity/slices/1508.jpg"  # held-out; covid-ct calls it COVID-19, graded mild


def test_a_covid_ct_slice_shows_its_severity_grade_under_the_finding(page, gateway, data_dir, screenshots):
    sign_in_as_admin(page, gateway)
    choose_files(page, data_dir / COVID_SLICE)

    [answer] = classify(page)

    assert answer["status"] == 201, answer
    result = answer["body"]
    [grade] = result["followups"]
    panel = case_of(page, "1508.jpg").locator("[data-role=result]")
    finding = {item["label"]: item for item in result["classes"]}[result["label"]]["finding"]
    expect(panel.locator(".finding").first).to_have_text(finding)
    followup = panel.locator("[data-role=followup]")
    expect(followup).to_have_count(1)
    expect(followup.get_by_role("heading")).to_have_text(grade["task"])
    words = {item["label"]: item for item in grade["classes"]}
    expect(followup.locator(".finding")).to_have_text(words[grade["label"]]["finding"])
    for label, probability in grade["probabilities"].items():
        bar = followup.locator(".bar").filter(has_text=words[label]["name"])
        expect(bar.locator(".bar-value")).to_have_text(percent(probability))
    expect(followup.get_by_role("link", name="About this model")).to_have_attribute(
        "href", f"#/models/{grade['model_name']}"
    )
    screenshots(page, "classify-ct-slice-with-severity")

    go_to(page, "History")
    history_row(page, result["id"]).get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("[data-role=followup] .finding")).to_have_text(words[grade["label"]]["finding"])
