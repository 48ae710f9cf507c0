"""The ``requests`` and ``errors`` points of a finished request, for every framework adapter.

An adapter (``luna_monitoring.sanic``, ``luna_monitoring.aiohttp``) gives each monitored
request four attributes: ``_luna_start_ns`` (the worker clock's timestamp when the request's
head was parsed; ``None`` once its points are made), ``_luna_start`` (``perf_counter_ns()`` then),
``_luna_id`` (its request id once made) and ``_luna_more`` (tags and fields added by the
handler). Its hooks subclass :class:`RequestPoints`, naming routes
(:meth:`RequestPoints.route_name`) and finding error codes
(:meth:`RequestPoints.error_code`); everything else is here, so both frameworks emit the
same points:

* ``route``: ``METHOD:/template`` as the route was declared; no route for the path:
  ``METHOD:__unmatched__``; a method the framework does not know: ``OTHER``, so clients
  cannot mint new series.
* ``error_code``: see :func:`error_code_of`.
* The tag set of a (method, route, status) is made once and shared by every point (nobody
  modifies it), so the encoder's prefix cache hits; excluded routes are decided once per
  route the same way.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Collection, Hashable
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from multidict import istr
from orjson import loads

from .caches import with_room
from .clock import seconds_since
from .point import Dropped, PointTuple
from .request_id import REQUEST_ID_HEADER, new_request_id, request_id_for
from .schema import SERIES, field_value, tag_value
from .settings import Settings
from .speedups import speedups

UNMATCHED = "__unmatched__"
"""Route template of requests that match no route: ``METHOD:__unmatched__``."""
OTHER_METHOD = "OTHER"
"""Method part of the route of an unmatched request with a method the framework does not know."""
MAX_ERROR_BODY_BYTES = 65536
"""JSON error bodies up to this size are read for their ``error_code``."""

_HEADER_KEY = istr(REQUEST_ID_HEADER)  # case-insensitive: the header dicts need not fold it
_RESERVED_TAGS = frozenset(("service", *SERIES["requests"].tags))
_RESERVED_FIELDS = frozenset(("request_id", "execution_time"))
_FIELD_TYPES = SERIES["requests"].fields
_EXCLUDED = ()  # cache entry of a route that emits no points
_REAL = (numbers.Real, Decimal)


def _never(route: str) -> bool:
    return False


class RequestPoints:
    """The points of one app's requests; an adapter's hooks subclass it.

    >>> hooks.bind(monitoring.clock.now_ns, monitoring.emit)          # at worker start
    >>> emit_points(hooks, request, request_id, status, key, response)  # response starts
    """

    __slots__ = ("_emit", "_entries", "_error_tags", "_excluded", "_now_ns", "_service", "_skip")

    def __init__(self, settings: Settings, *, skip_route: Callable[[str], bool] = _never) -> None:
        self._service = settings.service
        self._excluded = settings.excluded_routes
        self._skip = skip_route
        self._entries: dict[Hashable, tuple] = {}
        self._error_tags: dict[tuple, MappingProxyType] = {}
        self._now_ns: Callable[[], int] | None = None
        self._emit: Callable[[PointTuple], None] | None = None

    def bind(self, now_ns: Callable[[], int], emit: Callable[[PointTuple], None]) -> None:
        """Take timestamps from ``now_ns`` and hand points to ``emit`` (this worker's)."""
        self._now_ns = now_ns
        self._emit = emit

    def route_name(self, request: Any, status: int) -> tuple[str, bool]:
        """``METHOD:/template`` of ``request``, and whether it is the same for every request
        with its cache key (a 405's may depend on the path)."""
        raise NotImplementedError

    def error_code(self, request: Any, response: Any) -> str:
        """The ``error_code`` tag of a failed response (see :func:`error_code_of`)."""
        raise NotImplementedError

    def compile_hooks(
        self,
        request_class: type,
        base_init: Callable[..., None],
        response_hook: str,
        base_hook: Callable[..., Any],
        *,
        header_name: Any,
        header_type: Callable[[str], Any] | None,
        route_attrs: tuple[str, ...],
        response_attrs: tuple[str, str] = ("status", "headers"),
    ) -> None:
        """Give an adapter's request class, when the extension is built, the compiled
        ``__init__`` (``base_init``, then the start timestamps) and response hook (the method
        named ``response_hook``). That one does what the Python method does for a call with
        the response alone: the ``header_name`` header (``header_type(id)``, or the id),
        :data:`emit_points` keyed by (method, the chain of ``route_attrs`` read from the
        request, ``False`` if one before the last is ``None``, status), then ``base_hook``;
        any other call, and a websocket's 101, goes to the Python method. It reads the
        response's status and headers by the names in ``response_attrs``."""
        if speedups is not None:
            python_init = request_class.__init__
            request_class.__init__ = speedups.start_hook(python_init, base_init, self)
            python_hook = getattr(request_class, response_hook)
            compiled = speedups.response_hook(
                python_hook, base_hook, self, header_name, header_type, route_attrs, response_attrs
            )
            setattr(request_class, response_hook, compiled)

    def _entry(self, request: Any, status: int, key: Hashable) -> tuple:
        """Route tags and name of a (method, route, status) not seen before; cached."""
        name, cacheable = self.route_name(request, status)
        if self._skip(name) or any(pattern.search(name) for pattern in self._excluded):
            entry = _EXCLUDED
        else:
            tags = {"service": self._service, "route": name, "status_code": str(status)}
            entry = (MappingProxyType(tags), name)
        if cacheable:
            with_room(self._entries)[key] = entry
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


def python_emit_points(
    hooks: RequestPoints, request: Any, request_id: str, status: int, key: Hashable, response: Any
) -> None:
    """The points of ``request`` (an adapter's, for its ``hooks``), the first time it is
    answered; ``key`` identifies its (method, route, status) among the requests of the app.
    :data:`emit_points` is this function, or the same compiled."""
    start_ns = request._luna_start_ns
    if start_ns is None:  # a second response: no points
        return
    request._luna_start_ns = None
    execution_time = seconds_since(request._luna_start)
    entry = hooks._entries.get(key)
    if entry is None:
        entry = hooks._entry(request, status, key)
    if entry is _EXCLUDED:
        return
    route_tags, route_name = entry
    point_fields = {"request_id": request_id, "execution_time": execution_time}
    more = request._luna_more
    if more is not None:
        tags, fields = more
        route_tags = {**route_tags, **tags}
        point_fields.update(fields)
    emit = hooks._emit
    emit(("requests", start_ns, route_tags, point_fields))
    if status >= 400:
        error_tags = hooks._errors_tags(route_name, status, hooks.error_code(request, response))
        emit(("errors", start_ns, error_tags, {"request_id": request_id}))


def unmatched_route(method: str, template: str | None, methods: Collection[str]) -> str:
    """The route of a request that matched no route: ``METHOD:__unmatched__``, or with a
    405's ``template``; ``method`` is ``OTHER`` unless it is among ``methods``."""
    if method not in methods:
        method = OTHER_METHOD
    return f"{method}:{UNMATCHED if template is None else template}"


def error_code_of(exc: BaseException | None, body: Any, content_type: str | None) -> str:
    """The ``error_code`` tag of a failed response.

    The ``error_code`` attribute (int or str) of ``exc`` (the exception being handled), else
    the integer ``error_code`` of a JSON object ``body``, else ``"0"``.
    """
    code = getattr(exc, "error_code", None)
    if type(code) is int or (type(code) is str and code):
        return str(code)
    if (
        body
        and content_type
        and "json" in content_type
        and isinstance(body, bytes | bytearray | memoryview | str)
        and len(body) <= MAX_ERROR_BODY_BYTES
    ):
        try:
            code = loads(body).get("error_code")
        except Exception:
            return "0"
        if type(code) is int:
            return str(code)
    return "0"


def add_request_tags(request: Any, **tags: str | int | float | bool) -> None:
    """Add tags to this request's ``requests`` point (a Sanic or aiohttp request); values are
    written as strings.

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


def add_request_fields(request: Any, **fields: Any) -> None:
    """Add fields to this request's ``requests`` point (a Sanic or aiohttp request).

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


def _add(request: Any, index: int, items: dict) -> None:
    """Merge ``items`` into the tags (0) or fields (1) added to a monitored request."""
    if not items or getattr(request, "_luna_start_ns", None) is None:
        return
    more = request._luna_more or ({}, {})
    request._luna_more = (*more[:index], {**more[index], **items}, *more[index + 1 :])


def python_assign_id(request: Any) -> str:
    """The request's id, made now: its well-formed ``LUNA-Request-Id``, else a new one.
    :data:`assign_id` is this function, or the same compiled."""
    seconds = request._luna_start_ns // 1_000_000_000
    incoming = request.headers.get(_HEADER_KEY)
    request._luna_id = request_id = (
        new_request_id(seconds) if incoming is None else request_id_for(incoming, seconds)
    )
    return request_id


if speedups is None:
    emit_points = python_emit_points
    assign_id = python_assign_id
else:  # the same in C (core/_speedups.c), for the common request
    speedups.setup_requests(_HEADER_KEY, request_id_for, python_emit_points)
    emit_points = speedups.emit_points
    assign_id = speedups.assign_id


def request_id(request: Any) -> str | None:
    """The ``LUNA-Request-Id`` of a monitored request, made on first use; ``None`` for a
    request that is not monitored."""
    made = getattr(request, "_luna_id", None)
    if made is None and getattr(request, "_luna_start_ns", None) is not None:
        made = assign_id(request)
    return made
