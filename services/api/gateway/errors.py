"""Every error leaves the gateway as application/problem+json with a machine-readable `code`.

This module alone decides the HTTP status and headers of each domain error (`exceptions`) and
of each image problem (`cxr_model.images.ImageError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxr_model.images import ImageError
from gateway.exceptions import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    GatewayError,
    InvalidInput,
    NotAcceptable,
    NotFound,
    OutsideIntendedUse,
    TooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from gateway.schemas import InvalidRequestProblem, Problem

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://cxr.example/problems/"

_STATUS: dict[type[GatewayError], int] = {
    InvalidInput: 422,
    TooLarge: 413,
    NotFound: 404,
    Conflict: 409,
    NotAcceptable: 406,
    Unauthenticated: 401,
    Forbidden: 403,
    TooManyRequests: 429,
    Unavailable: 503,
}
# An image that is empty or of another kind is the request's fault as such; any other image problem
# (corrupt, too large to decode, a DICOM without pixels) is an image the gateway cannot use: 422.
_IMAGE_STATUS = {"empty_file": 400, "unsupported_media_type": 415}


def problem_type(code: str) -> str:
    """A stable URI per kind of problem, named after its `code`."""
    return PROBLEM_TYPE_BASE + code.replace("_", "-")


def problem_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": problem_type(code),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body | extra, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def status_of(error: GatewayError) -> int:
    return next(_STATUS[kind] for kind in type(error).__mro__ if kind in _STATUS)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of an operation that answers these statuses with a problem."""
    return {status: {"model": Problem} for status in statuses}


def install_error_handlers(app: FastAPI, retry_after: int) -> None:
    def headers_of(error: GatewayError) -> dict[str, str] | None:
        if isinstance(error, Unauthenticated):
            return {"WWW-Authenticate": "Bearer"}
        if isinstance(error, TooManyRequests):
            return {"Retry-After": str(error.retry_after)}
        if isinstance(error, Unavailable):
            return {"Retry-After": str(retry_after)}
        return None

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return problem_response(status_of(exc), exc.code, exc.message, headers_of(exc), **_details(exc))

    @app.exception_handler(ImageError)
    async def image_error(_: Request, exc: ImageError) -> JSONResponse:
        return problem_response(_IMAGE_STATUS.get(exc.code, 422), exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return problem_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        unknown = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and e["loc"][0] == "query"]
        if unknown:  # a misspelt filter would otherwise widen the search silently
            detail = f"unknown query parameter(s): {', '.join(unknown)}"
            return problem_response(400, "unknown_query_parameter", detail, errors=errors)
        return problem_response(422, "invalid_request", detail, errors=errors)

    @app.exception_handler(DataError)
    async def value_refused_by_database(_: Request, exc: DataError) -> JSONResponse:
        # e.g. an offset beyond bigint or a NUL character in a filter: the request's fault, not an outage
        return problem_response(422, "invalid_request", "a value is out of what the database accepts")

    @app.exception_handler(DBAPIError)
    async def database_down(request: Request, exc: DBAPIError) -> JSONResponse:
        return await gateway_error(request, DatabaseUnavailable())


def _details(error: GatewayError) -> dict[str, Any]:
    """The machine-readable fields of an intended-use refusal (`IntendedUseProblem`): what the image is,
    what the model accepts, which model, what the image-kind model saw, and every reason."""
    if not isinstance(error, OutsideIntendedUse):
        return {}
    first = error.refusals[0]
    return {
        "found": first.found,
        "accepted": first.accepted,
        "model": error.model,
        "input_kind": error.input_kind,
        "image_kind": error.image_kind,
        "refusals": [refusal.model_dump(mode="json") for refusal in error.refusals],
    }


MALFORMED_BODY = {
    "description": "The body cannot be parsed (e.g. it is not UTF-8)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def document_error_answers(app: FastAPI) -> None:
    """Document the error answers FastAPI leaves out or misdescribes: 422 is a problem, not its
    HTTPValidationError, and any operation with a body answers 400 when the body cannot be parsed.

    Call it once every route is included: FastAPI caches the schema it generates, amended here in place.
    """
    schema = app.openapi()
    schema["components"]["schemas"]["HTTPValidationError"] = InvalidRequestProblem.model_json_schema()
    for path in schema["paths"].values():
        for operation in path.values():
            if "requestBody" in operation:
                operation["responses"].setdefault("400", MALFORMED_BODY)
