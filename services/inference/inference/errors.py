"""Errors the data plane raises; the HTTP layer turns each into `{"error": "..."}`."""


class InferenceError(Exception):
    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ModelNotFound(InferenceError):
    status_code = 404


class ModelNotReady(InferenceError):
    status_code = 503


class BadRequest(InferenceError):
    status_code = 400


class PayloadTooLarge(InferenceError):
    status_code = 413


class UnsupportedMediaType(InferenceError):
    status_code = 415
