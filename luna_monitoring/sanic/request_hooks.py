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
:class:`~luna_monitoring.sanic.header_text.HeaderText`, which Sanic need not sanitise. The tag
set of a (method, route, status) is made once and shared by every point (nobody modifies
it), so the encoder's prefix cache hits; excluded routes are decided once per route the
same way.

* ``route``: ``METHOD:/template`` as the route was declared (``GET:/handlers/<handler_id>``,
  Sanic's implicit ``:str`` left out). No route for the path: ``METHOD:__unmatched__``
  (404). Path known but not for this method (405): the path's template with the request's
  method. A method Sanic does not know (and a request too malformed to parse) is ``OTHER``,
  so clients cannot mint new series.
* ``error_code``: see :func:`error_code`.
* ``execution_time`` runs from the moment the request's head is parsed (before routing and
  the body) until the response starts. For a streamed response
  (``await request.respond()`` then ``send()``) that is the time to its first byte: Sanic
  has no hook at the end of a stream short of signals, which cost every request far more.
* A websocket, or a request whose client is gone before the response, emits nothing.
"""

from __future__ import annotations

import contextlib
import numbers
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from time import perf_counter
from types import MappingProxyType
from typing import Any

from orjson import loads
from sanic import HTTPResponse, Request
from sanic.constants import HTTP_METHODS
from sanic.response import BaseHTTPResponse
from sanic_routing import Route

from ..core.caches import with_room
from ..core.point import Dropped, PointTuple
from ..core.request_id import REQUEST_ID_HEADER, new_request_id, request_id_for
from ..core.schema import SERIES, field_value, tag_value
from ..core.settings import Settings
from .header_text import HeaderName, HeaderText

UNMATCHED = "__unmatched__"
"""Route template of requests that match no route: ``METHOD:__unmatched__``."""
OTHER_METHOD = "OTHER"
"""Method part of the route of an unmatched request with a method Sanic does not know."""
MAX_ERROR_BODY_BYTES = 65536
"""JSON error bodies up to this size are read for their ``error_code``."""

_HEADER = HeaderName(REQUEST_ID_HEADER)  # case-insensitive: the header dicts need not fold it
_RESERVED_TAGS = frozenset(("service", *SERIES["requests"].tags))
_RESERVED_FIELDS = frozenset(("request_id", "execution_time"))
_FIELD_TYPES = SERIES["requests"].fields
_EXCLUDED = ()  # cache entry of a route that emits no points
_REAL = (numbers.Real, Decimal)


def _never(route: str) -> bool:
    return False


class RequestHooks:
    """The request hooks of one app: a :class:`~sanic.Request` subclass made for it.

    >>> hooks = RequestHooks(settings)
    >>> app.request_class = hooks.request_class(app.request_class)    # at startup
    >>> hooks.bind(monitoring.clock.now_ns, monitoring.emit)          # before_server_start
    """

    __slots__ = ("_emit", "_entries", "_error_tags", "_excluded", "_now_ns", "_service", "_skip")

    def __init__(self, settings: Settings, *, skip_route: Callable[[str], bool] = _never) -> None:
        self._service = settings.service
        self._excluded = settings.excluded_routes
        self._skip = skip_route
        self._entries: dict[tuple, tuple] = {}
        self._error_tags: dict[tuple, MappingProxyType] = {}
        self._now_ns: Callable[[], int] | None = None
        self._emit: Callable[[PointTuple], None] | None = None

    def bind(self, now_ns: Callable[[], int], emit: Callable[[PointTuple], None]) -> None:
        """Take timestamps from ``now_ns`` and hand points to ``emit`` (this worker's)."""
        self._now_ns = now_ns
        self._emit = emit

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
                self._luna_start = perf_counter()
                self._luna_id = self._luna_more = None

            @property
            def ctx(self) -> Any:
                if self._ctx is None:
                    _set_request_id(base_ctx(self), self._luna_id or _assign_id(self))
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

        MonitoredRequest.__name__ = MonitoredRequest.__qualname__ = f"Monitored{base.__name__}"
        return MonitoredRequest

    def on_response(self, request: Request, response: BaseHTTPResponse) -> None:
        """A response about to be sent: the ``LUNA-Request-Id`` header and, the first time
        for this request, the points."""
        request_id = request._luna_id or _assign_id(request)
        response.headers[_HEADER] = HeaderText(request_id)
        start_ns = request._luna_start_ns
        if start_ns is None:  # a second response (Sanic refuses it): the header only
            return
        request._luna_start_ns = None
        execution_time = perf_counter() - request._luna_start
        status = response.status
        route = request.route
        entry = self._entries.get((request.method, route and route.path, status))
        if entry is None:
            entry = self._entry(request, status)
        if entry is _EXCLUDED:
            return
        route_tags, route_name = entry
        point_fields = {"request_id": request_id, "execution_time": execution_time}
        more = request._luna_more
        if more is not None:
            tags, fields = more
            route_tags = {**route_tags, **tags}
            point_fields.update(fields)
        emit = self._emit
        emit(("requests", start_ns, route_tags, point_fields))
        if status >= 400:
            error_tags = self._errors_tags(route_name, status, error_code(response))
            emit(("errors", start_ns, error_tags, {"request_id": request_id}))

    def _entry(self, request: Request, status: int) -> tuple:
        """Route tags and name of a (method, route, status) not seen before; cached."""
        route = request.route
        method = request.method
        if route is not None:
            name = f"{method}:{_template(route)}"
        else:
            template = _template_of_wrong_method(request) if status == 405 else None
            if method not in HTTP_METHODS:
                method = OTHER_METHOD
            name = f"{method}:{UNMATCHED if template is None else template}"
        if self._skip(name) or any(pattern.search(name) for pattern in self._excluded):
            entry = _EXCLUDED
        else:
            tags = {"service": self._service, "route": name, "status_code": str(status)}
            entry = (MappingProxyType(tags), name)
        if route is not None or status != 405:  # a 405's name depends on the path
            with_room(self._entries)[(request.method, route and route.path, status)] = entry
        return entry

    def _errors_tags(self, route: str, status: int, code: str) -> MappingProxyType:
        key = (route, status, code)
        tags = self._error_tags.get(key)
        if tags is None:
            tags = MappingProxyType(
                {
                    "service": self._service,
                    "route": route,
                    "status_code": str(status),
                    "error_code": code,
                }
            )
            with_room(self._error_tags)[key] = tags
        return tags


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
    """The ``error_code`` tag of a failed response.

    The ``error_code`` attribute (int or str) of the exception being handled, else the
    integer ``error_code`` of a JSON object body, else ``"0"``.
    """
    code = getattr(sys.exc_info()[1], "error_code", None)
    if type(code) is int or (type(code) is str and code):
        return str(code)
    body = getattr(response, "body", None)
    content_type = response.content_type
    if body and content_type and "json" in content_type and len(body) <= MAX_ERROR_BODY_BYTES:
        try:
            code = loads(body).get("error_code")
        except Exception:
            return "0"
        if type(code) is int:
            return str(code)
    return "0"


def add_request_tags(request: Request, **tags: str | int | float | bool) -> None:
    """Add tags to this request's ``requests`` point; values are written as strings.

    >>> add_request_tags(request, account="7", api_version=6)

    Values are str, int, float, bool or other real numbers (``Decimal``, ...). Never raises:
    a tag of another type, or one the point sets itself (``service``, ``route``,
    ``status_code``), is left out and counted in ``stats["tags_dropped"]``, with a
    rate-limited warning. Keep the values few: each distinct tag set is a series.
    """
    checked: dict[str, Any] = {}
    for key, value in tags.items():
        if key in _RESERVED_TAGS:
            _dropped(checked, key, f"requests: tag {key!r} is set by the monitoring itself")
            continue
        try:
            checked[key] = tag_value("requests", key, value)
        except ValueError as exc:
            checked[key] = Dropped(str(exc))
    _add(request, 0, checked)


def add_request_fields(request: Request, **fields: Any) -> None:
    """Add fields to this request's ``requests`` point.

    >>> add_request_fields(request, load_images_for_processing_time=0.012)

    Fields of the ``requests`` series have their declared type
    (``load_images_for_processing_time``: float seconds). Other names keep the type of their
    value (bool, int, float or str; other real numbers such as ``Decimal`` are written as
    floats), except ``*_time`` names, which are float seconds; keep each name's type the
    same on every request (InfluxDB rejects a field whose type changes). ``None``, NaN and
    infinite values are left out. Never raises: a field of another type, an int beyond
    int64, or ``request_id`` / ``execution_time`` is left out and counted in
    ``stats["fields_dropped"]``, with a rate-limited warning.
    """
    checked: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _RESERVED_FIELDS:
            _dropped(checked, key, f"requests: field {key!r} is set by the monitoring itself")
            continue
        try:
            converted = _request_field(key, value)
        except ValueError as exc:
            converted = Dropped(str(exc))
        if converted is not None:
            checked[key] = converted
    _add(request, 1, checked)


def _dropped(items: dict, name: str, reason: str) -> None:
    """Count a reserved name in ``items`` without touching the point's own value of it."""
    items[f"\0{name}"] = Dropped(reason)


def _request_field(key: str, value: Any) -> Any:
    if value is None:
        return None
    expected = _FIELD_TYPES.get(key) or (float if key.endswith("_time") else type(value))
    if expected is bool:
        return value
    if expected not in (int, float, str) and isinstance(value, _REAL):
        expected = int if isinstance(value, numbers.Integral) else float
    if expected not in (int, float, str):
        raise ValueError(
            f"requests: field {key!r} must be bool, int, float or str, "
            f"got {type(value).__name__} {value!r:.80}"
        )
    return field_value("requests", key, value, expected)


def _add(request: Request, index: int, items: dict) -> None:
    """Merge ``items`` into the tags (0) or fields (1) added to a monitored request."""
    if not items or getattr(request, "_luna_start_ns", None) is None:
        return
    more = request._luna_more or ({}, {})
    request._luna_more = (*more[:index], {**more[index], **items}, *more[index + 1 :])


def _assign_id(request: Request) -> str:
    """The request's id, made now: its well-formed ``LUNA-Request-Id``, else a new one."""
    seconds = request._luna_start_ns // 1_000_000_000
    incoming = request.headers.get(_HEADER)
    request._luna_id = request_id = (
        new_request_id(seconds) if incoming is None else request_id_for(incoming, seconds)
    )
    return request_id


def _set_request_id(ctx: Any, request_id: str) -> None:
    """``ctx.request_id``, unless the app's context type cannot take it."""
    with contextlib.suppress(AttributeError, TypeError):
        ctx.request_id = request_id
