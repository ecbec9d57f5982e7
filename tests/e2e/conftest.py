"""Browser fixtures: Debian's headless Chromium through Playwright, and screenshots of the main screens."""

from __future__ import annotations

import shutil
from pathlib import Path

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
LAPTOP = {"width": 1280, "height": 900}
REPO_SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


def pytest_collection_modifyitems(items):
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed")
    for item in items:
        if not CHROMIUM.exists() and "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """Opens a page of the app at `url` in a fresh browser context (no shared session);
    afterwards, fails the test if the app threw an uncaught exception."""
    contexts, uncaught = [], []

    def open_(url: str, viewport: dict = LAPTOP):
        context = browser.new_context(base_url=url, locale="en-US", viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: uncaught.append(str(error)))
        return page

    yield open_
    for context in contexts:
        context.close()
    assert uncaught == [], f"uncaught errors in the app: {uncaught}"


@pytest.fixture
def page(open_page, frontend_url):
    return open_page(frontend_url)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    """Saves a full-page screenshot as <name>.png in this run's folder and in test-output/screenshots/."""
    folder = tmp_path_factory.mktemp("screenshots")
    REPO_SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        shutil.copy(path, REPO_SCREENSHOTS / path.name)
        return path

    return save
