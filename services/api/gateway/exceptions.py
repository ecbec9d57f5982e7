"""The gateway's domain errors: what went wrong, with a machine-readable `code`.

Domain modules raise these (and `cxr_model.images.ImageError` for files that are not a
readable image); `errors` alone turns them into HTTP answers.
"""

from __future__ import annotations

from cxr_model.images import ImageError


class GatewayError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Refused(GatewayError):
    """The caller's request cannot be carried out as it is (the caller's side)."""


class InvalidInput(Refused):
    """The request or its image is not acceptable (e.g. the model refused the image)."""


class TooLarge(Refused):
    pass


class NotFound(Refused):
    pass


class Conflict(Refused):
    pass


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
