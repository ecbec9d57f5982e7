"""The local frontend server mirrors nginx: static app, gateway under /api, metrics kept private."""

import httpx


def test_gateway_is_proxied_under_api_with_the_prefix_stripped(frontend_url):
    response = httpx.get(f"{frontend_url}/api/health/live")
    assert response.status_code == 200 and response.json() == {"live": True}
    assert response.headers["x-frame-options"] == "DENY"


def test_gateway_metrics_are_not_published(frontend_url, gateway):
    assert httpx.get(f"{frontend_url}/api/metrics").status_code == 404
    assert httpx.get(f"{gateway.url}/metrics").status_code == 200  # the scraper still reaches it directly


def test_the_app_and_its_config_are_served(frontend_url):
    page = httpx.get(f"{frontend_url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert 'apiBaseUrl: "/api"' in httpx.get(f"{frontend_url}/config.js").text
