"""The ``requests`` and ``errors`` points of an aiohttp app: a request class, route names.

A middleware costs every request a coroutine and a partial of its own, and turns on
aiohttp's middleware chain for apps that had none; so the hooks live in a subclass of
``web.Request`` that the app's request factory makes instead (``Application._make_request``
accepts the class to make). Its ``__init__`` takes the start timestamp as soon as the
request's head is parsed, before routing; its ``_prepare_hook``, which aiohttp awaits once
for every response as it is prepared (a handler's, a raised ``HTTPException``, the 500 of an
unhandled exception, a stream before its first byte; the hook that runs
``on_response_prepare``), sets the ``LUNA-Request-Id`` header and appends the points. The
points and their tags are made by :class:`~luna_monitoring.core.request_points.RequestPoints`,
as for Sanic. The compiled hook reads the attributes behind aiohttp's ``route``,
``resource``, ``status`` and ``headers`` properties, four Python calls a response fewer,
where a probe at setup finds this aiohttp keeping them there. Only the route names differ
from Sanic's, in their spelling of parameters:

* ``route``: ``METHOD:`` and the resource's canonical form (``GET:/items/{item_id}``). No
  resource for the path: ``METHOD:__unmatched__``; path known but not for this method
  (405): the path's resource with the request's method (resources of sub-applications
  excepted: ``__unmatched__``); a method aiohttp does not know, and a request too malformed
  to route: ``OTHER``.
* ``error_code``: the ``error_code`` attribute of the exception being handled (a raised
  ``web.HTTPException`` subclass, or the unhandled exception of a 500), else the integer
  ``error_code`` of a JSON object body.
* A websocket (101) emits nothing and gets no header.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from time import perf_counter_ns
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from multidict import istr

from ..core.request_id import REQUEST_ID_HEADER
from ..core.request_points import (
    OTHER_METHOD,
    RequestPoints,
    assign_id,
    emit_points,
    error_code_of,
    unmatched_route,
)

_HEADER = istr(REQUEST_ID_HEADER)
_LUNA_ATTRS = frozenset(("_luna_id", "_luna_more", "_luna_start", "_luna_start_ns"))


class RequestHooks(RequestPoints):
    """The request hooks of one aiohttp app: a ``web.Request`` subclass made for it.

    >>> hooks = RequestHooks(settings)
    >>> app._make_request = partial(app._make_request, _cls=hooks.request_class(web.Request))
    >>> hooks.bind(monitoring.clock.now_ns, monitoring.emit)          # at worker start
    """

    __slots__ = ()

    def request_class(self, base: type[web.Request], state: Any) -> type[web.Request]:
        """A subclass of ``base`` that calls these hooks; ``state`` is the app's
        :class:`~luna_monitoring.aiohttp.AppMonitoring` (``_luna_state`` of its requests)."""
        base_init = base.__init__
        base_prepare_hook = base._prepare_hook
        hooks = self
        on_response = self.on_response

        class MonitoredRequest(base):
            __slots__ = tuple(_LUNA_ATTRS)
            ATTRS = base.ATTRS | _LUNA_ATTRS
            _luna_state = state

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                base_init(self, *args, **kwargs)
                self._luna_start_ns = hooks._now_ns()
                self._luna_start = perf_counter_ns()
                self._luna_id = self._luna_more = None

            def _prepare_hook(self, response: web.StreamResponse) -> Awaitable[None]:
                on_response(self, response)
                return base_prepare_hook(self, response)

        self.compile_hooks(
            MonitoredRequest,
            base_init,
            "_prepare_hook",
            base_prepare_hook,
            header_name=_HEADER,
            header_type=None,
            **_compiled_reads(),
        )
        MonitoredRequest.__name__ = MonitoredRequest.__qualname__ = f"Monitored{base.__name__}"
        return MonitoredRequest

    def on_response(self, request: web.Request, response: web.StreamResponse) -> None:
        """A response being prepared: the ``LUNA-Request-Id`` header and, the first time for
        this request, the points."""
        status = response.status
        if status == 101:  # a websocket
            return
        request_id = request._luna_id or assign_id(request)
        response.headers[_HEADER] = request_id
        match_info = request._match_info
        resource = match_info.route.resource if match_info is not None else False
        key = (request.method, resource, status)
        emit_points(self, request, request_id, status, key, response)

    def route_name(self, request: web.Request, status: int) -> tuple[str, bool]:
        """``METHOD:/template`` (aiohttp's spelling ``/{param}``); a 405's depends on the path."""
        match_info = request._match_info
        if match_info is None:  # not routed: too malformed
            return unmatched_route(OTHER_METHOD, None, ()), True
        resource = match_info.route.resource
        if resource is not None:
            return f"{request.method}:{resource.canonical}", True
        template = _template_of_wrong_method(request) if status == 405 else None
        return unmatched_route(request.method, template, hdrs.METH_ALL), status != 405

    def error_code(self, request: web.Request, response: web.StreamResponse) -> str:
        body = getattr(response, "body", None)
        return error_code_of(sys.exc_info()[1], body, response.content_type)


def _compiled_reads() -> dict[str, tuple[str, ...]]:
    """What the compiled response hook reads: the attributes behind aiohttp's ``route``,
    ``resource``, ``status`` and ``headers`` properties (each property is a Python call),
    when this aiohttp keeps them there; else the properties."""
    probe = web.Application().router.add_get("/", _probe_handler)
    response = web.Response()
    match_info = UrlMappingMatchInfo({}, probe)
    if (
        getattr(match_info, "_route", None) is probe
        and getattr(probe, "_resource", None) is probe.resource is not None
        and getattr(response, "_status", None) == response.status
        and getattr(response, "_headers", None) is response.headers
    ):
        return {"route_attrs": ("_match_info", "_route", "_resource"),
                "response_attrs": ("_status", "_headers")}  # fmt: skip
    return {"route_attrs": ("_match_info", "route", "resource")}


async def _probe_handler(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()


def _template_of_wrong_method(request: web.Request) -> str | None:
    """The canonical form of the resource of a 405's path, if any."""
    try:
        path = request.rel_url.path_safe
        for resource in request.app.router.resources():
            match = getattr(resource, "_match", None)
            if match is not None and match(path) is not None:
                return resource.canonical
    except Exception:  # private API of another aiohttp: no template
        pass
    return None
