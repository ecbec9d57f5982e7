"""Drag and drop, keyboard use, and labelled controls."""

from __future__ import annotations

import base64

from e2e_steps import case_of, choose_files, expect, go_to, sign_in_as_admin, wait_until_loaded

UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, button, a[href]')]
    .filter((control) => control.getClientRects().length > 0 || control.classList.contains('visually-hidden'))
    .filter((control) => !(control.labels?.length || control.getAttribute('aria-label')
                          || control.getAttribute('aria-labelledby') || control.textContent.trim()))
    .map((control) => control.outerHTML)"""


def test_files_dropped_on_the_drop_zone_are_previewed(page, gateway, sample_xrays):
    xrays = sample_xrays["normal"][:2]
    sign_in_as_admin(page, gateway)
    files = [{"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()} for path in xrays]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const { name, data } of files) {
                const bytes = Uint8Array.from(atob(data), (char) => char.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
            }
            return transfer;
        }""",
        files,
    )

    page.locator("[data-role=drop-zone]").dispatch_event("drop", {"dataTransfer": transfer})

    for path in xrays:
        expect(case_of(page, path.name)).to_be_visible()
        assert wait_until_loaded(page, page.get_by_role("img", name=f"Preview of {path.name}")) > 0
    expect(page.get_by_text("2 images ready")).to_be_visible()


def test_the_app_works_from_the_keyboard(page, gateway, sample_xrays, admin_client):
    path = sample_xrays["normal"][0]
    admin_client.post("/classify", files={"file": (path.name, path.read_bytes())})  # a row to open
    page.goto("/")
    page.keyboard.type(gateway.admin_username)  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(gateway.admin_password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New classification")).to_be_focused()

    with page.expect_file_chooser() as chooser:
        page.get_by_label("Choose a chest X-ray").focus()
        page.keyboard.press("Enter")
    chooser.value.set_files(path)
    expect(case_of(page, path.name)).to_be_visible()

    page.get_by_role("link", name="History").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="History")).to_be_focused()
    page.locator("#history tbody tr").first.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()


def test_every_control_has_a_label(page, gateway, sample_xrays):
    sign_in_as_admin(page, gateway)
    choose_files(page, sample_xrays["normal"][0])
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    for link in ("History", "Users", "API clients", "Audit log"):
        go_to(page, link)
        expect(page.locator("main [data-role=loading]:visible")).to_have_count(0)
        assert page.evaluate(UNLABELLED_CONTROLS) == [], link
