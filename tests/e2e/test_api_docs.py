"""The API documentation opens in a real browser through the frontend's proxy, offline, under its CSP."""

import pytest


@pytest.fixture
def docs_through_proxy(gateway_with, logs_dir):
    """A gateway with API_DOCS on, and the frontend's proxy in front of it (its /api prefix, its CSP)."""
    from processes import free_port, frontend_process

    gateway = gateway_with(API_DOCS="true")
    port = free_port()
    frontend = frontend_process(port, str(gateway.base_url).rstrip("/"), logs_dir / "frontend-docs.log").start()
    yield f"http://127.0.0.1:{port}"
    frontend.stop()


def test_swagger_ui_works_through_the_proxy_with_no_request_leaving_the_machine(open_page, docs_through_proxy):
    page = open_page(docs_through_proxy)
    refused, requested = [], []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.on("request", lambda request: requested.append(request.url))

    page.goto("/api/docs")

    page.locator(".opblock-summary-path", has_text="/dicomweb/studies").wait_for()
    assert page.locator(".opblock-summary-path", has_text="/classify").count() >= 1
    page.locator("button.authorize").click()
    page.get_by_text("clientCredentials", exact=False).first.wait_for()  # both OAuth2 flows are offered
    page.locator("button.close-modal").click()
    page.locator(".opblock-summary-path", has_text="/health/live").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    page.locator(".live-responses-table .response-col_status", has_text="200").wait_for()

    assert page.url.startswith(f"{docs_through_proxy}/api/docs/")
    assert refused == []
    assert all(url.startswith(docs_through_proxy) for url in requested), requested
