"""The clinician web app in a real headless Chromium, served by serve.py in front of the real gateway."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FINDINGS = {"normal": "No pneumonia detected", "pneumonia": "Pneumonia suspected"}
CLASS_NAMES = {"normal": "Normal", "pneumonia": "Pneumonia"}
SLOW = 60_000  # ms: the first classification also loads the model

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, frontend_url):
    context = browser.new_context(base_url=frontend_url, locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def sign_in(page, username: str, password: str) -> None:
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in_as_admin(page, gateway) -> None:
    sign_in(page, gateway.admin_username, gateway.admin_password)
    expect(page.get_by_role("heading", name="New classification")).to_be_visible()


def choose_file(page, path: Path) -> None:
    page.get_by_label("Choose a chest X-ray").set_input_files(path)


def classify(page) -> dict:
    """Clicks Classify and returns the gateway's answer as the page received it."""
    with page.expect_response(lambda response: response.url.endswith("/api/classify"), timeout=SLOW) as answer:
        page.get_by_role("button", name="Classify", exact=True).click()
    return {"status": answer.value.status, "body": answer.value.json()}


def wait_until_loaded(page, image) -> int:
    """Waits until an <img> has decoded its image; returns its natural width."""
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return image.evaluate("(img) => img.naturalWidth")


def percent(probability: float) -> str:
    """As the page shows it: one decimal, and never a certain 0.0 % or 100.0 %."""
    if probability > 0.999:
        return "> 99.9%"
    if probability < 0.001:
        return "< 0.1%"
    return f"{probability * 100:.1f}%"


def results_total(admin_client) -> int:
    return admin_client.get("/results", params={"limit": 1}).json()["total"]


def test_classify_a_real_xray_and_find_it_in_the_history(page, gateway, sample_xrays):
    from PIL import Image

    xray = sample_xrays["pneumonia"][0]
    sign_in_as_admin(page, gateway)

    choose_file(page, xray)
    preview = page.get_by_role("img", name=f"Preview of {xray.name}")
    expect(preview).to_be_visible()
    assert wait_until_loaded(page, preview) > 0

    answer = classify(page)
    assert answer["status"] == 201, answer
    result = answer["body"]
    panel = page.locator("#classify [data-role=result]")
    expect(panel.locator(".finding")).to_have_text(FINDINGS[result["label"]], timeout=SLOW)
    bars = panel.get_by_role("list", name="Probability of each class").get_by_role("listitem")
    expect(bars).to_have_count(2)
    for label, probability in result["probabilities"].items():
        bar = bars.filter(has_text=CLASS_NAMES[label])
        expect(bar).to_contain_text(percent(probability))
        assert bar.locator(".bar-fill").get_attribute("style").startswith("width:")
    expect(panel).to_contain_text(f"{result['model_name']} v{result['model_version']}")
    threshold = result["threshold"]
    expect(panel).to_contain_text(f"{percent(threshold)} probability of pneumonia" if threshold is not None else "None")
    expect(panel).to_contain_text("not a diagnosis")

    row = page.locator(f"#history tbody tr[data-result-id='{result['id']}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text(FINDINGS[result["label"]])
    expect(row).to_contain_text(percent(result["probabilities"]["pneumonia"]))
    expect(row).to_contain_text(f"{result['model_name']} v{result['model_version']}")
    expect(row).to_contain_text(gateway.admin_username)
    assert wait_until_loaded(page, row.locator("img")) > 0

    row.get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".finding")).to_have_text(FINDINGS[result["label"]])
    image = dialog.get_by_role("img", name=f"Chest X-ray submitted by {gateway.admin_username}")
    assert wait_until_loaded(page, image) == Image.open(xray).width  # the full-size image
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status").filter(has_text="You have signed out.")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()


def test_wrong_password_shows_an_error_and_stays_on_sign_in(page, gateway):
    sign_in(page, gateway.admin_username, "not-the-password")

    expect(page.get_by_role("alert")).to_have_text("The username or password is not correct.")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Password")).to_be_focused()
    expect(page.locator("#workspace")).to_be_hidden()


def test_a_file_that_is_not_an_image_is_refused_and_not_stored(page, gateway, admin_client, tmp_path):
    fake = tmp_path / "not-an-xray.png"
    fake.write_text("this is text, not a PNG image")
    before = results_total(admin_client)
    sign_in_as_admin(page, gateway)

    choose_file(page, fake)
    expect(page.get_by_text("The preview cannot be shown")).to_be_visible()
    answer = classify(page)

    assert answer["status"] == 415
    expect(page.get_by_role("alert")).to_contain_text("This file type is not supported")
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_disabled()
    expect(page.locator("#classify .result")).to_have_count(0)
    assert results_total(admin_client) == before


def test_a_too_large_file_is_refused_with_a_clear_message(page, gateway, tmp_path):
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + bytes(int(gateway.env.get("MAX_UPLOAD_BYTES", 20 * 1024 * 1024))))
    sign_in_as_admin(page, gateway)

    choose_file(page, huge)
    answer = classify(page)

    assert answer["status"] == 413
    expect(page.get_by_role("alert")).to_contain_text("This file is too large")


def test_an_invalid_session_returns_to_sign_in_with_a_message(page, gateway):
    sign_in_as_admin(page, gateway)
    # The real gateway judges a token it did not issue, as it would an expired one.
    page.route(
        lambda url: "/api/results?" in url,
        lambda route: route.continue_(headers={**route.request.headers, "authorization": "Bearer not.a.token"}),
    )

    page.get_by_role("button", name="Refresh").click()

    expect(page.get_by_role("status")).to_have_text("Your session has expired. Please sign in again.")
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()


def test_an_inference_outage_shows_when_to_retry(page, gateway, sample_xrays):
    # Stopping the shared inference service would disturb other tests; the browser gets its answer instead.
    problem = '{"status":503,"title":"Service Unavailable","detail":"down","code":"inference_unavailable"}'
    page.route(
        "**/api/classify",
        lambda route: route.fulfill(
            status=503, body=problem, content_type="application/problem+json", headers={"Retry-After": "7"}
        ),
    )
    sign_in_as_admin(page, gateway)

    choose_file(page, sample_xrays["normal"][0])
    classify(page)

    expect(page.get_by_role("alert")).to_have_text(
        "The classification service is not available at the moment. Please try again in 7 seconds."
    )
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_enabled()


def test_the_page_makes_no_request_to_another_host(page, gateway, sample_xrays, frontend_url):
    origin = urlsplit(frontend_url)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    document = page.goto("/")
    assert "default-src 'self'" in document.headers["content-security-policy"]
    sign_in_as_admin(page, gateway)
    choose_file(page, sample_xrays["normal"][0])
    result = classify(page)["body"]
    page.locator(f"#history tbody tr[data-result-id='{result['id']}']").get_by_role("button").click()
    wait_until_loaded(page, page.get_by_role("dialog").get_by_role("img"))

    assert any("/api/classify" in url for url in requested)
    elsewhere = [url for url in requested if not same_origin(url, origin)]
    assert elsewhere == []


def same_origin(url: str, origin) -> bool:
    if url.startswith("data:"):
        return True
    parts = urlsplit(url.removeprefix("blob:"))  # blob: URLs carry the origin that created them
    return (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc)
