"""The Prometheus endpoint of a Sanic app: the route, the worker's metric files, and the
multiprocess directory made by the main process (see :mod:`luna_monitoring.core.prometheus`)."""

from __future__ import annotations

from collections.abc import Callable

from sanic import HTTPResponse, Request, Sanic

from ..core.point import Point
from ..core.prometheus import (
    CONTENT_TYPE,
    WorkerMetrics,
    create_directory,
    is_metrics_path,
    open_metrics,
    remove_directory,
    require_client,
)
from ..core.settings import Settings


def setup_prometheus(app: Sanic, settings: Settings) -> None:
    """With ``prometheus.enabled``: add the metrics route and the directory listeners."""
    if not settings.prometheus.enabled:
        return
    require_client(settings)
    app.add_route(_serve_metrics, settings.prometheus.path, methods=["GET"], name="luna_metrics")
    app.main_process_start(_create_directory)
    app.main_process_stop(_remove_directory)


def is_metrics_route(app: Sanic, route: str) -> bool:
    """Whether ``route`` (``METHOD:/template``) is the metrics endpoint: it emits no points."""
    return is_metrics_path(app.ctx.monitoring_settings, route)


def start_prometheus(app: Sanic, settings: Settings) -> Callable[[list[Point]], None] | None:
    """Open this worker's metric files; return the sink (``None`` when disabled)."""
    metrics = app.ctx.monitoring_prometheus = open_metrics(settings, lambda: app.ctx.monitoring)
    return metrics and metrics.points.feed


def stop_prometheus(app: Sanic) -> None:
    """Copy the final health counters, close this worker's metric files (see
    :meth:`WorkerMetrics.close`)."""
    metrics: WorkerMetrics | None = getattr(app.ctx, "monitoring_prometheus", None)
    if metrics is not None:
        metrics.close()
        app.ctx.monitoring_prometheus = None


async def _serve_metrics(request: Request) -> HTTPResponse:
    body = request.app.ctx.monitoring_prometheus.exposition()
    return HTTPResponse(body, content_type=CONTENT_TYPE)


def _create_directory(app: Sanic) -> None:
    """``main_process_start``: a directory for the workers to be spawned, unless one is given."""
    app.ctx.monitoring_prometheus_made_dir = create_directory()


def _remove_directory(app: Sanic) -> None:
    """``main_process_stop``: remove the directory made at start."""
    remove_directory(app.ctx.monitoring_prometheus_made_dir)
