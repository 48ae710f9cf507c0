"""LUNA-style errors: ``{"error_code": int, "desc": str, "detail": str}`` with a 4xx/5xx status.

The codes are this example's own. The exception carries ``error_code``, which the monitoring
extension puts in the ``error_code`` tag of the ``errors`` point.
"""

from __future__ import annotations

from typing import NamedTuple

from sanic import HTTPResponse, Request, Sanic, json
from sanic.exceptions import SanicException
from sanic.log import error_logger


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


class LunaError(SanicException):
    """An error answered as LUNA does.

    >>> raise LunaError(BAD_IMAGE, "image 'a.jpg' is not JPEG, PNG, ...")
    """

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail, status_code=kind.status, quiet=True)
        self.kind = kind
        self.error_code = kind.error_code
        self.detail = detail


def error_response(kind: ErrorKind, detail: str) -> HTTPResponse:
    """The JSON response of an error."""
    body = {"error_code": kind.error_code, "desc": kind.desc, "detail": detail}
    return json(body, status=kind.status)


async def _handle(request: Request, exc: Exception) -> HTTPResponse:
    if isinstance(exc, LunaError):
        return error_response(exc.kind, exc.detail)
    if isinstance(exc, SanicException) and exc.status_code < 500:
        kind = _BY_STATUS.get(exc.status_code) or BAD_REQUEST._replace(status=exc.status_code)
        return error_response(kind, str(exc))
    error_logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(INTERNAL, "unexpected error, see the service log")


def install(app: Sanic) -> None:
    """Answer every error of ``app`` with a LUNA-style JSON body."""
    app.error_handler.add(Exception, _handle)
