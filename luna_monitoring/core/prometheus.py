"""Prometheus exposition of the monitoring points and the monitor's health, all workers merged.

The families are declared in ``metric_families``; ``point_metrics`` feeds them from the
points the writer drains (a sink), ``monitor_health`` from the writer's and the plugins'
counters, both in the background, never on the request path. Each worker writes its own
files in a multiprocess directory, in prometheus-client's multiprocess format
(``metric_files``), and the endpoint merges every file of the directory.

The directory: with ``app.run(workers=N)`` the main process creates a temporary one in
``main_process_start``, exports it as ``PROMETHEUS_MULTIPROC_DIR`` before the workers are
spawned, and removes it in ``main_process_stop``. A directory already given in
``PROMETHEUS_MULTIPROC_DIR`` is used as is and never removed (metrics that the app's own
code creates with prometheus-client in the workers then land there and are served too). A
single process (``single_process=True``, test clients) without either makes its own and
removes it when it stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

from sanic import HTTPResponse, Request, Sanic

from .metric_files import MmapedDict
from .monitor_health import HealthMetrics, read_health
from .point import Point
from .point_metrics import PointMetrics
from .settings import MonitoringConfigError, Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
_DIR_PREFIX = "luna-monitoring-prometheus-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def setup_prometheus(app: Sanic, settings: Settings) -> None:
    """With ``prometheus.enabled``: add the metrics route and the directory listeners."""
    if not settings.prometheus.enabled:
        return
    if MmapedDict is None:
        raise MonitoringConfigError(
            "MONITORING['prometheus']: enabled needs prometheus-client; "
            "install luna-monitoring[prometheus]"
        )
    app.add_route(_serve_metrics, settings.prometheus.path, methods=["GET"], name="luna_metrics")
    app.main_process_start(_create_directory)
    app.main_process_stop(_remove_directory)


def is_metrics_route(app: Sanic, route: str) -> bool:
    """Whether ``route`` (``METHOD:/template``) is the metrics endpoint: it emits no points."""
    prometheus = app.ctx.monitoring_settings.prometheus
    return prometheus.enabled and route.partition(":")[2] == prometheus.path


def start_prometheus(app: Sanic, settings: Settings) -> Callable[[list[Point]], None] | None:
    """Open this worker's metric files; return the sink (``None`` when disabled)."""
    if not settings.prometheus.enabled:
        return None
    given = os.environ.get(ENV)  # None in a single process: no main process made one
    metrics = app.ctx.monitoring_prometheus = PointMetrics(
        given or tempfile.mkdtemp(prefix=_DIR_PREFIX),
        settings.prometheus.extra_labels,
        buckets=settings.prometheus.buckets,
        owns_directory=given is None,
    )
    health = app.ctx.monitoring_prometheus_health = HealthMetrics(
        metrics.files, settings.service, lambda: read_health(app.ctx.monitoring)
    )
    health.start()
    return metrics.feed


def stop_prometheus(app: Sanic) -> None:
    """Copy the final health counters, close this worker's metric files (see
    :meth:`PointMetrics.close`)."""
    metrics: PointMetrics | None = getattr(app.ctx, "monitoring_prometheus", None)
    if metrics is not None:
        app.ctx.monitoring_prometheus_health.stop()
        metrics.close()
        app.ctx.monitoring_prometheus = None


async def _serve_metrics(request: Request) -> HTTPResponse:
    body = request.app.ctx.monitoring_prometheus.exposition()
    return HTTPResponse(body, content_type=CONTENT_TYPE)


def _create_directory(app: Sanic) -> None:
    """``main_process_start``: a directory for the workers to be spawned, unless one is given."""
    made = None if ENV in os.environ else tempfile.mkdtemp(prefix=_DIR_PREFIX)
    if made:
        os.environ[ENV] = made
    app.ctx.monitoring_prometheus_made_dir = made


def _remove_directory(app: Sanic) -> None:
    """``main_process_stop``: remove the directory made at start."""
    made = app.ctx.monitoring_prometheus_made_dir
    if made:
        os.environ.pop(ENV, None)
        shutil.rmtree(made, ignore_errors=True)
