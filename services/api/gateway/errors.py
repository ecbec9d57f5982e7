"""Every error leaves the gateway as application/problem+json with a machine-readable `code`."""

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.schemas import InvalidRequestProblem

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://cxr.example/problems/"


def problem_type(code: str) -> str:
    """A stable URI per kind of problem, named after its `code`."""
    return PROBLEM_TYPE_BASE + code.replace("_", "-")


class ProblemError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


class ServiceUnavailable(ProblemError):
    """A dependency (database, object store, inference) is down; the caller should retry."""

    def __init__(self, code: str, detail: str, retry_after: int = 5):
        super().__init__(503, code, detail, {"Retry-After": str(retry_after)})


def problem_response(status: int, code: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    body = {
        "type": problem_type(code),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body | extra, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install_error_handlers(app: FastAPI, retry_after: int) -> None:
    @app.exception_handler(ProblemError)
    async def problem(_: Request, exc: ProblemError):
        return problem_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return problem_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError):
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem_response(422, "invalid_request", detail, errors=errors)

    @app.exception_handler(DataError)
    async def value_refused_by_database(_: Request, exc: DataError):
        # e.g. an offset beyond bigint or a NUL character in a filter: the request's fault, not an outage
        return problem_response(422, "invalid_request", "a value is out of what the database accepts")

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_down(_: Request, exc: DBAPIError):
        return problem_response(
            503, "database_unavailable", "the database is unavailable; retry later", {"Retry-After": str(retry_after)}
        )

    document_error_answers(app)


MALFORMED_BODY = {
    "description": "The body cannot be parsed (e.g. it is not UTF-8)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def document_error_answers(app: FastAPI) -> None:
    """Document the error answers FastAPI leaves out or misdescribes: 422 is a problem, not its
    HTTPValidationError, and any operation with a body answers 400 when the body cannot be parsed."""
    generate = app.openapi

    def openapi() -> dict:
        schema = generate()  # FastAPI caches it
        schema["components"]["schemas"]["HTTPValidationError"] = InvalidRequestProblem.model_json_schema()
        for path in schema["paths"].values():
            for operation in path.values():
                if "requestBody" in operation:
                    operation["responses"].setdefault("400", MALFORMED_BODY)
        return schema

    app.openapi = openapi
