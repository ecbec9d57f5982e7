"""What the browser tests do in the app, in the words of its screens."""

from __future__ import annotations

from pathlib import Path

from cxr_model.card import ModelCard

# the words the committed default model's card gives its classes
DEFAULT_CARD = ModelCard.read(Path(__file__).resolve().parents[2] / "models" / "pneumonia-xray" / "2")
FINDINGS = {label: DEFAULT_CARD.describe(label).finding for label in DEFAULT_CARD.labels}
CLASS_NAMES = {label: DEFAULT_CARD.describe(label).name for label in DEFAULT_CARD.labels}
# the model a chest X-ray goes to when it states no age (a JPEG, PNG): the adult one
ADULT_CARD = ModelCard.read(Path(__file__).resolve().parents[2] / "models" / "pneumonia-xray-adult" / "1")
SLOW = 60_000  # ms: the first classification also loads the model
EXPIRED = "Your session has expired. Please sign in again."


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def sign_in(page, username: str, password: str) -> None:
    page.goto("/")
    form = page.locator("#login")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()


def sign_in_as_admin(page, gateway) -> None:
    sign_in(page, gateway.admin_username, gateway.admin_password)
    expect(page.get_by_role("heading", name="New classification")).to_be_visible()


def go_to(page, link: str) -> None:
    """Follows a link of the main navigation to the page of that name."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", level=1, name=link)).to_be_visible()


def choose_files(page, *paths: Path) -> None:
    page.get_by_label("Choose a chest X-ray").set_input_files(list(paths))


def case_of(page, file_name: str):
    """The card of one chosen file on the classify page."""
    return page.locator("#classify .case").filter(has=page.get_by_role("heading", name=file_name))


def classify(page, expected_answers: int = 1) -> list[dict]:
    """Clicks Classify and returns the gateway's answers as the page received them."""
    answers = []

    def collect(response):
        if response.url.endswith("/api/classify"):
            answers.append(response)

    page.on("response", collect)
    page.get_by_role("button", name="Classify", exact=True).click()
    expect(page.locator("#classify [data-role=progress] [role=status]")).to_contain_text("classified", timeout=SLOW)
    page.remove_listener("response", collect)
    assert len(answers) == expected_answers, [a.url for a in answers]
    return [{"status": answer.status, "body": answer.json()} for answer in answers]


def wait_until_loaded(page, image) -> int:
    """Waits until an <img> has decoded its image; returns its natural width."""
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=SLOW)
    return image.evaluate("(img) => img.naturalWidth")


def percent(probability: float) -> str:
    """As the page shows it: one decimal, and never a certain 0.0 % or 100.0 %."""
    if probability > 0.999:
        return "> 99.9%"
    if probability < 0.001:
        return "< 0.1%"
    return f"{probability * 100:.1f}%"


def history_row(page, result_id: str):
    return page.locator(f"#history tbody tr[data-result-id='{result_id}']")
