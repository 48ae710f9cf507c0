"""The ``requests`` and ``errors`` points: a request class, route names, error codes.

Sanic middleware costs every request about 2 µs just by existing, so the hooks live in a
subclass of the app's request class instead (``app.request_class``). Its ``__init__``
takes the start timestamp from the worker's :class:`~luna_monitoring.core.clock.UniqueClock`,
before any middleware runs. Its ``respond``, which every response passes once before Sanic
runs the response middleware (the handler's, the error handler's, a streamed one before its
first byte), sets the ``LUNA-Request-Id`` header and appends the points to the writer's
buffer; the first response of a request is the one counted. Nothing else happens on the
request path. The request id is made when first needed: by ``request.ctx`` (Sanic makes the
context on first use; its ``request_id`` is set then, unless the app's context type has no
room for it) or by the response. The header's name and value are
:class:`~luna_monitoring.sanic.header_text.HeaderText`, which Sanic need not sanitise. The
points themselves are made by :class:`~luna_monitoring.core.request_points.RequestPoints`,
shared with the aiohttp adapter; this module names Sanic's routes and finds its errors.

* ``route``: ``METHOD:/template`` as the route was declared (``GET:/handlers/<handler_id>``,
  Sanic's implicit ``:str`` left out). No route for the path: ``METHOD:__unmatched__``
  (404). Path known but not for this method (405): the path's template with the request's
  method. A method Sanic does not know (and a request too malformed to parse) is ``OTHER``,
  so clients cannot mint new series.
* ``error_code``: see :func:`error_code`; the exception's attribute, else the JSON body's.
* ``execution_time`` runs from the moment the request's head is parsed (before routing and
  the body) until the response starts. For a streamed response
  (``await request.respond()`` then ``send()``) that is the time to its first byte: Sanic
  has no hook at the end of a stream short of signals, which cost every request far more.
* A websocket, or a request whose client is gone before the response, emits nothing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable
from time import perf_counter_ns
from typing import Any

from sanic import HTTPResponse, Request
from sanic.constants import HTTP_METHODS
from sanic.response import BaseHTTPResponse
from sanic_routing import Route

from ..core.collector import register_request_type
from ..core.request_id import REQUEST_ID_HEADER
from ..core.request_points import (
    RequestPoints,
    add_request_fields,
    add_request_tags,
    assign_id,
    emit_points,
    error_code_of,
    unmatched_route,
)
from .header_text import HeaderName, HeaderText

__all__ = ["RequestHooks", "add_request_fields", "add_request_tags", "error_code"]

_HEADER = HeaderName(REQUEST_ID_HEADER)


class RequestHooks(RequestPoints):
    """The request hooks of one app: a :class:`~sanic.Request` subclass made for it.

    >>> hooks = RequestHooks(settings)
    >>> app.request_class = hooks.request_class(app.request_class)    # at startup
    >>> hooks.bind(monitoring.clock.now_ns, monitoring.emit)          # before_server_start
    """

    __slots__ = ()

    def request_class(self, base: type[Request]) -> type[Request]:
        """A subclass of ``base`` (the app's request class) that calls these hooks.

        ``__init__`` (Sanic makes a request as soon as its head is parsed) takes the start
        time; ``respond`` (every response goes through it once: the one a handler returns,
        an error handler's, and a streamed one before its first byte) calls
        :meth:`on_response` before Sanic runs any response middleware. The request id is
        made when first needed: by ``request.ctx`` (which Sanic creates on first use) or by
        the response.
        """
        base_init = base.__init__
        base_respond = base.respond
        base_ctx = base.ctx.fget
        hooks = self
        on_response = self.on_response

        class MonitoredRequest(base):
            __slots__ = ("_luna_id", "_luna_more", "_luna_start", "_luna_start_ns")

            def __init__(
                self,
                url_bytes: bytes,
                headers: Any,
                version: str,
                method: str,
                transport: Any,
                app: Any,
                head: bytes = b"",
                stream_id: int = 0,
            ) -> None:
                base_init(
                    self, url_bytes, headers, version, method, transport, app, head, stream_id
                )
                self._luna_start_ns = hooks._now_ns()
                self._luna_start = perf_counter_ns()
                self._luna_id = self._luna_more = None

            @property
            def ctx(self) -> Any:
                if self._ctx is None:
                    _set_request_id(base_ctx(self), self._luna_id or assign_id(self))
                return self._ctx

            def respond(
                self,
                response: BaseHTTPResponse | None = None,
                *,
                status: int = 200,
                headers: Any = None,
                content_type: str | None = None,
            ) -> Awaitable[Any]:
                if response is None:  # what Sanic's respond does, so the header can be set
                    response = HTTPResponse(
                        status=status, headers=headers, content_type=content_type
                    )
                on_response(self, response)
                return base_respond(self, response)

        self.compile_hooks(
            MonitoredRequest,
            base_init,
            "respond",
            base_respond,
            header_name=_HEADER,
            header_type=HeaderText,
            route_attrs=("route", "path"),
        )
        MonitoredRequest.__name__ = MonitoredRequest.__qualname__ = f"Monitored{base.__name__}"
        return MonitoredRequest

    def on_response(self, request: Request, response: BaseHTTPResponse) -> None:
        """A response about to be sent: the ``LUNA-Request-Id`` header and, the first time
        for this request, the points."""
        request_id = request._luna_id or assign_id(request)
        response.headers[_HEADER] = HeaderText(request_id)
        route = request.route
        status = response.status
        key = (request.method, route.path if route is not None else False, status)
        emit_points(self, request, request_id, status, key, response)

    def route_name(self, request: Request, status: int) -> tuple[str, bool]:
        """``METHOD:/template`` (Sanic's spelling ``/<param>``); a 405's depends on the path."""
        route = request.route
        if route is not None:
            return f"{request.method}:{_template(route)}", True
        template = _template_of_wrong_method(request) if status == 405 else None
        return unmatched_route(request.method, template, HTTP_METHODS), status != 405

    def error_code(self, request: Request, response: BaseHTTPResponse) -> str:
        return error_code(response)


def _template(route: Route) -> str:
    """``/path/<param>`` as written, with Sanic's implicit ``:str`` left out."""
    return "/" + route.path.replace(":str>", ">")


def _template_of_wrong_method(request: Request) -> str | None:
    """The route template of a 405's path, found with a method its route allows; if any."""
    allowed = getattr(sys.exc_info()[1], "allowed_methods", None) or HTTP_METHODS
    host = request.headers.get("host")
    for method in allowed:
        try:
            route, _, _ = request.app.router.get(request.path, method, host)
        except Exception:
            continue
        return _template(route)
    return None


def error_code(response: HTTPResponse) -> str:
    """The ``error_code`` tag of a failed response: see
    :func:`~luna_monitoring.core.request_points.error_code_of`; the exception is the one being
    handled."""
    return error_code_of(sys.exc_info()[1], getattr(response, "body", None), response.content_type)


def _set_request_id(ctx: Any, request_id: str) -> None:
    """``ctx.request_id``, unless the app's context type cannot take it."""
    with contextlib.suppress(AttributeError, TypeError):
        ctx.request_id = request_id


def _monitoring_of(request: Request) -> Any:
    return getattr(request.app.ctx, "monitoring", None)


register_request_type(Request, _monitoring_of)
