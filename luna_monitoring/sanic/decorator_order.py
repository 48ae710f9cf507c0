"""Refuse to start when ``@monitored_estimation`` sits above the route decorator.

``@app.post("/sdk")`` registers the function it is given; a ``@monitored_estimation``
written above it wraps the function only after registration, so the route keeps the bare
handler and nothing is ever recorded. ``monitored_estimation`` marks each function it wraps;
at server start every route's handler is looked up once and a marked one whose wrapper is
on no route fails the start with the right order.
"""

from __future__ import annotations

from sanic import Sanic

from ..core.collector import WRAPPED_BY
from ..core.settings import MonitoringConfigError


def check_decorator_order(app: Sanic) -> None:
    """Raise :class:`MonitoringConfigError` for a route whose handler was wrapped too late."""
    routes = list(app.router.routes)
    registered = {id(route.handler) for route in routes}
    for route in routes:
        wrapper = getattr(route.handler, WRAPPED_BY, None)
        if wrapper is None or id(wrapper) in registered:
            continue
        method = sorted(route.methods)[0].lower() if route.methods else "route"
        name = getattr(route.handler, "__name__", "handler")
        raise MonitoringConfigError(
            f"monitoring: @monitored_estimation is above @app.{method}(...) on {name!r} "
            f"(/{route.path}), so the route runs the bare handler and records nothing; "
            f"put it below: @app.{method}(...), then @monitored_estimation, then def {name}"
        )
