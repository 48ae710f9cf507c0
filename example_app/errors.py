"""LUNA-style errors: ``{"error_code": int, "desc": str, "detail": str}`` with a 4xx/5xx status.

The codes are this example's own. The exception carries ``error_code``, which the monitoring
puts in the ``error_code`` tag of the ``errors`` point. Framework-neutral: each app turns
:func:`error_body` into its framework's JSON response.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ErrorKind(NamedTuple):
    """One error of the example: its code, HTTP status and description."""

    error_code: int
    status: int
    desc: str


INTERNAL = ErrorKind(1, 500, "Internal server error")
BAD_REQUEST = ErrorKind(12000, 400, "Bad request")
NOT_FOUND = ErrorKind(12003, 404, "Resource not found")
METHOD_NOT_ALLOWED = ErrorKind(12004, 405, "Method not allowed")
BAD_QUERY_PARAM = ErrorKind(12022, 400, "Bad query parameter")
EMPTY_BODY = ErrorKind(12030, 400, "Request has no image")
IMAGE_TOO_LARGE = ErrorKind(12031, 413, "Image is too large")
BAD_IMAGE = ErrorKind(12032, 400, "Failed to decode image")

_BY_STATUS = {kind.status: kind for kind in (NOT_FOUND, METHOD_NOT_ALLOWED, IMAGE_TOO_LARGE)}


class LunaError(Exception):
    """An error answered as LUNA does.

    >>> raise LunaError(BAD_IMAGE, "image 'a.jpg' is not JPEG, PNG, ...")
    """

    quiet = True  # Sanic logs no traceback for it

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status_code = kind.status
        self.error_code = kind.error_code
        self.detail = detail


def error_body(kind: ErrorKind, detail: str) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error_code": kind.error_code, "desc": kind.desc, "detail": detail}


def kind_of_status(status: int) -> ErrorKind:
    """The error of a 4xx the framework answered itself (no route, wrong method, too large)."""
    return _BY_STATUS.get(status) or BAD_REQUEST._replace(status=status)
