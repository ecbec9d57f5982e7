"""Errors the data plane raises; the HTTP layer turns each into `{"error": "...", "code": ...}`."""

from cxr_model.images import ImageError


class InferenceError(Exception):
    status_code = 400
    code: str | None = None  # machine-readable, where callers need to tell errors apart

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ModelNotFound(InferenceError):
    status_code = 404


class NotAuthorized(InferenceError):
    status_code = 401
    code = "repository_token_required"


class ModelNotReady(InferenceError):
    status_code = 503


class BadRequest(InferenceError):
    status_code = 400


class PayloadTooLarge(InferenceError):
    status_code = 413
    code = "image_too_large"


class ServerBusy(InferenceError):
    status_code = 503
    code = "queue_full"


class RequestTimeout(InferenceError):
    status_code = 504
    code = "timeout"


_IMAGE_ERROR_STATUS = {"unsupported_media_type": 415, "image_too_large": 413}


def status_of(exc: Exception) -> int:
    """The HTTP status an error is answered with (image errors carry only a code)."""
    if isinstance(exc, ImageError):
        return _IMAGE_ERROR_STATUS.get(exc.code, 400)
    return getattr(exc, "status_code", 500)


def error_body(exc: Exception) -> dict[str, str]:
    """The JSON body an error is answered with: KServe v2's `error`, and the `code` where there is one."""
    if isinstance(exc, ImageError):
        return {"error": str(exc), "code": exc.code}
    if isinstance(exc, InferenceError):
        return {"error": exc.message} if exc.code is None else {"error": exc.message, "code": exc.code}
    return {"error": "internal server error"}
