"""The API's documentation pages, served by the gateway itself from a PyPI package's assets (no CDN).

Swagger UI at /docs/: a static page with no inline script or style, whose every URL is relative to the
page, so it works offline, at the gateway's root and behind the frontend's proxy (/api/docs/), under its
Content-Security-Policy (ReDoc is not served: its styles are inline <style> elements, which that policy
refuses). With API_DOCS off (the default in production) the page is not served and /openapi.json answers
signed-in callers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from gateway.deps import CurrentPrincipal
from gateway.exceptions import NotFound

_PACKAGE_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_OWN_ASSETS = Path(__file__).parent / "docs_assets"
_ASSETS = {
    "swagger-ui.css": _PACKAGE_ASSETS / "swagger-ui.css",
    "swagger-ui-bundle.js": _PACKAGE_ASSETS / "swagger-ui-bundle.js",
    "favicon.png": _PACKAGE_ASSETS / "favicon.png",
    "swagger-init.js": _OWN_ASSETS / "swagger-init.js",
}
_CACHE = {"Cache-Control": "public, max-age=3600"}

_SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: API</title>
<link rel="icon" href="favicon.png"><link rel="stylesheet" href="swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script><script src="swagger-init.js"></script></body></html>
"""

pages = APIRouter(include_in_schema=False)
schema_for_signed_in = APIRouter(include_in_schema=False)


@pages.get("/docs")
def to_the_page() -> RedirectResponse:
    # relative, so that behind a proxy's prefix the browser stays under it
    return RedirectResponse("docs/")


@pages.get("/docs/", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    return HTMLResponse(_SWAGGER_PAGE.format(title=request.app.title))


@pages.get("/docs/{asset}")
def asset(asset: str) -> FileResponse:
    if asset not in _ASSETS:
        raise NotFound("not_found", f"there is no {asset}")
    return FileResponse(_ASSETS[asset], headers=_CACHE)


@schema_for_signed_in.get("/openapi.json")
def openapi_schema(request: Request, _: CurrentPrincipal) -> JSONResponse:
    """The OpenAPI schema, for signed-in callers when the documentation pages are off."""
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


def install(app: FastAPI, docs_served: bool) -> None:
    """The page and the public schema, or the schema for signed-in callers only."""
    if docs_served:
        app.include_router(pages)
        app.add_api_route("/openapi.json", lambda: JSONResponse(app.openapi()), include_in_schema=False)
    else:
        app.include_router(schema_for_signed_in)
