"""The gateway's domain errors: what went wrong, with a machine-readable `code`.

Domain modules raise these (and `cxr_model.images.ImageError` for files that are not a
readable image); `errors` alone turns them into HTTP answers.
"""

from __future__ import annotations

from typing import Any

from cxr_model.images import ImageError
from cxr_model.intended_use import Refusal


class GatewayError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Refused(GatewayError):
    """The caller's request cannot be carried out as it is (the caller's side)."""


class InvalidInput(Refused):
    """The request or its image is not acceptable (e.g. the model refused the image)."""


class OutsideIntendedUse(InvalidInput):
    """The image is not one the model is made for, or no deployed model is made for it: every reason,
    the first one (`code`) the most specific, and the model the image was checked against (with the input
    it is made for, in words)."""

    def __init__(self, refusals: list[Refusal], model: str | None = None, input_kind: str | None = None):
        super().__init__(refusals[0].code, refusals[0].detail)
        self.refusals, self.model, self.input_kind = refusals, model, input_kind
        self.image_kind: dict[str, Any] | None = None  # what the image-kind model saw, when it ran


class TooLarge(Refused):
    pass


class NotFound(Refused):
    pass


class Conflict(Refused):
    pass


class NotAcceptable(Refused):
    """No answer in a media type the caller accepts (e.g. a DICOM SR of a JPEG)."""


class Unauthenticated(Refused):
    pass


class Forbidden(Refused):
    pass


class TooManyRequests(Refused):
    def __init__(self, code: str, message: str, retry_after: int):
        super().__init__(code, message)
        self.retry_after = retry_after


class Unavailable(GatewayError):
    """A dependency (database, object store, inference service) is down; the caller should retry."""


class DatabaseUnavailable(Unavailable):
    def __init__(self) -> None:
        super().__init__("database_unavailable", "the database is unavailable; retry later")


# What a refused request leaves behind is kept (its audit event); failures of the gateway itself are not.
REFUSALS = (Refused, ImageError)
