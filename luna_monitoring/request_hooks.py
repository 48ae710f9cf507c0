"""The ``requests`` and ``errors`` points: two Sanic middlewares, route names, error codes.

The request middleware runs first of all request middleware: it takes the start timestamp
from the worker's :class:`~luna_monitoring.clock.UniqueClock` and sets
``request.ctx.request_id``. The response middleware runs first of all response middleware,
so it sees the response the handler or the error handler made, and it runs exactly once per
response (Sanic guarantees that): it sets the ``LUNA-Request-Id`` header and appends the
points to the writer's buffer. Nothing else happens on the request path. The tag set of a
(method, route, status) is made once and shared by every point (nobody modifies it), so the
encoder's prefix cache hits; excluded routes are decided once per route the same way.

* ``route``: ``METHOD:/template`` as the route was declared (``GET:/handlers/<handler_id>``,
  Sanic's implicit ``:str`` left out). No route for the path: ``METHOD:__unmatched__``
  (404). Path known but not for this method (405): the path's template with the request's
  method. A method Sanic does not know (and a request too malformed to parse) is ``OTHER``,
  so clients cannot mint new series.
* ``error_code``: see :func:`error_code`.
* ``execution_time`` runs from the request middleware (routing is done and the body is read)
  to the response middleware, i.e. until the response starts. For a streamed response
  (``await request.respond()`` then ``send()``) that is the time to its first byte: Sanic
  has no hook at the end of a stream short of signals, which cost every request far more.
* A websocket, or a request whose client is gone before the response, emits nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from time import perf_counter
from types import MappingProxyType
from typing import Any

from multidict import istr
from orjson import loads
from sanic import HTTPResponse, Request
from sanic.constants import HTTP_METHODS
from sanic_routing import Route

from .point import Point
from .request_id import REQUEST_ID_HEADER, new_request_id, request_id_for
from .schema import SERIES, field_value, tag_value
from .settings import Settings

UNMATCHED = "__unmatched__"
"""Route template of requests that match no route: ``METHOD:__unmatched__``."""
OTHER_METHOD = "OTHER"
"""Method part of the route of an unmatched request with a method Sanic does not know."""
MAX_ERROR_BODY_BYTES = 65536
"""JSON error bodies up to this size are read for their ``error_code``."""

_STATE = "_luna_monitoring"  # request.ctx attribute: [start_ns, start_perf, tags, fields]
_HEADER = istr(REQUEST_ID_HEADER)  # a case-insensitive key the header dicts need not fold
_MAX_CACHED = 10_000
_RESERVED_TAGS = frozenset(("service", *SERIES["requests"].tags))
_RESERVED_FIELDS = frozenset(("request_id", "execution_time"))
_FIELD_TYPES = SERIES["requests"].fields
_EXCLUDED = ()  # cache entry of a route that emits no points
_new_point = tuple.__new__  # Point(...) without NamedTuple's Python-level __new__


def _never(route: str) -> bool:
    return False


class RequestHooks:
    """The request and response middleware of one worker.

    >>> hooks = RequestHooks(settings)
    >>> app.register_middleware(hooks.on_request, "request", priority=RequestHooks.PRIORITY)
    >>> app.register_middleware(hooks.on_response, "response", priority=-RequestHooks.PRIORITY)
    >>> hooks.bind(monitoring.clock.now_ns, monitoring.emit)   # before_server_start
    """

    PRIORITY = sys.maxsize
    """Sanic runs request middleware from the highest priority, response middleware from the
    lowest: ``PRIORITY`` puts the request hook first, ``-PRIORITY`` the response hook."""

    __slots__ = ("_emit", "_entries", "_error_tags", "_excluded", "_now_ns", "_service", "_skip")

    def __init__(self, settings: Settings, *, skip_route: Callable[[str], bool] = _never) -> None:
        self._service = settings.service
        self._excluded = settings.excluded_routes
        self._skip = skip_route
        self._entries: dict[tuple, tuple] = {}
        self._error_tags: dict[tuple, MappingProxyType] = {}
        self._now_ns: Callable[[], int] | None = None
        self._emit: Callable[[Point], None] | None = None

    def bind(self, now_ns: Callable[[], int], emit: Callable[[Point], None]) -> None:
        """Take timestamps from ``now_ns`` and hand points to ``emit`` (this worker's)."""
        self._now_ns = now_ns
        self._emit = emit

    def on_request(self, request: Request) -> None:
        """Request middleware: start time and ``request.ctx.request_id``."""
        start_ns = self._now_ns()
        ctx = request.ctx
        incoming = request.headers.get(_HEADER)
        ctx.request_id = (
            new_request_id(start_ns // 1_000_000_000)
            if incoming is None
            else request_id_for(incoming, start_ns // 1_000_000_000)
        )
        ctx._luna_monitoring = [start_ns, perf_counter(), None, None]

    def on_response(self, request: Request, response: HTTPResponse) -> None:
        """Response middleware: the ``LUNA-Request-Id`` header and the points."""
        ctx = request.ctx
        try:
            start_ns, start, tags, fields = ctx._luna_monitoring
        except AttributeError:  # a request middleware before ours failed: start now
            self.on_request(request)
            start_ns, start, tags, fields = ctx._luna_monitoring
        execution_time = perf_counter() - start
        request_id = ctx.request_id
        response.headers[_HEADER] = request_id
        status = response.status
        route = request.route
        entry = self._entries.get((request.method, route and route.path, status))
        if entry is None:
            entry = self._entry(request, status)
        if entry is _EXCLUDED:
            return
        route_tags, route_name = entry
        point_fields = {"request_id": request_id, "execution_time": execution_time}
        if tags is not None:
            route_tags = {**route_tags, **tags}
        if fields is not None:
            point_fields.update(fields)
        emit = self._emit
        emit(_new_point(Point, ("requests", start_ns, route_tags, point_fields)))
        if status >= 400:
            error_tags = self._errors_tags(route_name, status, error_code(response))
            emit(_new_point(Point, ("errors", start_ns, error_tags, {"request_id": request_id})))

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
            _bounded(self._entries)[(request.method, route and route.path, status)] = entry
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
            _bounded(self._error_tags)[key] = tags
        return tags


def _template(route: Route) -> str:
    """``/path/<param>`` as written, with Sanic's implicit ``:str`` left out."""
    return "/" + route.path.replace(":str>", ">")


def _bounded(cache: dict) -> dict:
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    return cache


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

    ``ValueError`` for a value of another type or a tag the point sets itself (``service``,
    ``route``, ``status_code``). Keep the values few: each distinct tag set is a series.
    """
    checked = {}
    for key, value in tags.items():
        if key in _RESERVED_TAGS:
            raise ValueError(f"requests: tag {key!r} is set by the monitoring itself")
        checked[key] = tag_value("requests", key, value)
    state = _state(request)
    if state is not None and checked:
        state[2] = checked if state[2] is None else {**state[2], **checked}


def add_request_fields(request: Request, **fields: Any) -> None:
    """Add fields to this request's ``requests`` point.

    >>> add_request_fields(request, load_images_for_processing_time=0.012)

    Fields of the ``requests`` series have their declared type
    (``load_images_for_processing_time``: float seconds). Other names keep the type of their
    value (bool, int, float or str), except ``*_time`` names, which are float seconds; keep
    each name's type the same on every request (InfluxDB rejects a field whose type
    changes). ``None``, NaN and infinite values are left out. ``ValueError`` for any other
    type, an int beyond int64, or ``request_id`` / ``execution_time``.
    """
    checked = {}
    for key, value in fields.items():
        converted = _request_field(key, value)
        if converted is not None:
            checked[key] = converted
    state = _state(request)
    if state is not None and checked:
        state[3] = checked if state[3] is None else {**state[3], **checked}


def _request_field(key: str, value: Any) -> Any:
    if key in _RESERVED_FIELDS:
        raise ValueError(f"requests: field {key!r} is set by the monitoring itself")
    if value is None:
        return None
    expected = _FIELD_TYPES.get(key) or (float if key.endswith("_time") else type(value))
    if expected is bool:
        return value
    if expected not in (int, float, str):
        raise ValueError(
            f"requests: field {key!r} must be bool, int, float or str, "
            f"got {type(value).__name__} {value!r}"
        )
    return field_value("requests", key, value, expected)


def _state(request: Request) -> list | None:
    """The monitoring state of ``request``; ``None`` when it is not monitored."""
    return vars(request.ctx).get(_STATE)
