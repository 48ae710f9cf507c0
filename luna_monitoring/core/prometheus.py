"""Prometheus exposition of the monitoring points and the monitor's health, all workers merged.

The families are declared in ``metric_families``; ``point_metrics`` feeds them from the
points the writer drains (a sink), ``monitor_health`` from the writer's and the plugins'
counters, both in the background, never on the request path. Each worker writes its own
files in a multiprocess directory, in prometheus-client's multiprocess format
(``metric_files``), and the endpoint merges every file of the directory.

The directory: a main process that spawns workers (Sanic's ``app.run(workers=N)``) creates
a temporary one with :func:`create_directory`, exported as ``PROMETHEUS_MULTIPROC_DIR``
before the workers are spawned, and removes it with :func:`remove_directory` when it stops.
A directory already given in ``PROMETHEUS_MULTIPROC_DIR`` is used as is and never removed
(metrics that the app's own code creates with prometheus-client in the workers then land
there and are served too). A single process without either (``single_process=True``,
``web.run_app``, test clients) makes its own and removes it when it stops. The adapters
serve :meth:`WorkerMetrics.exposition` on ``prometheus.path``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

from .metric_files import MmapedDict
from .monitor_health import HealthMetrics, read_health
from .point_metrics import PointMetrics
from .settings import MonitoringConfigError, Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
_DIR_PREFIX = "luna-monitoring-prometheus-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def require_client(settings: Settings) -> None:
    """With ``prometheus.enabled``: :class:`MonitoringConfigError` unless prometheus-client is
    installed."""
    if settings.prometheus.enabled and MmapedDict is None:
        raise MonitoringConfigError(
            "MONITORING['prometheus']: enabled needs prometheus-client; "
            "install luna-monitoring[prometheus]"
        )


def is_metrics_path(settings: Settings, route: str) -> bool:
    """Whether ``route`` (``METHOD:/template``) is the metrics endpoint: it emits no points."""
    prometheus = settings.prometheus
    return prometheus.enabled and route.partition(":")[2] == prometheus.path


class WorkerMetrics(NamedTuple):
    """This worker's metrics: the points' families (``points.feed`` is the writer sink) and
    the monitor's health, copied in the background, in the same files."""

    points: PointMetrics
    health: HealthMetrics

    def exposition(self) -> bytes:
        """The merged metrics of all workers in the Prometheus text format."""
        return self.points.exposition()

    def close(self) -> None:
        """Copy the final health counters and close this worker's files (see
        :meth:`PointMetrics.close`)."""
        self.health.stop()
        self.points.close()


def open_metrics(settings: Settings, runtime: Callable[[], Any]) -> WorkerMetrics | None:
    """This worker's :class:`WorkerMetrics` (``None`` when disabled), in the directory of
    ``PROMETHEUS_MULTIPROC_DIR``, else in one of its own; ``runtime()`` returns the worker's
    runtime object (``None`` before it exists), whose counters the health copy reads. Call it
    in the worker's event loop: the health copy runs there."""
    if not settings.prometheus.enabled:
        return None
    given = os.environ.get(ENV)  # None in a single process: no main process made one
    points = PointMetrics(
        given or tempfile.mkdtemp(prefix=_DIR_PREFIX),
        settings.prometheus.extra_labels,
        buckets=settings.prometheus.buckets,
        owns_directory=given is None,
    )
    health = HealthMetrics(points.files, settings.service, lambda: read_health(runtime()))
    health.start()
    return WorkerMetrics(points, health)


def create_directory() -> str | None:
    """In a main process, before workers are spawned: a directory for them, exported as
    ``PROMETHEUS_MULTIPROC_DIR``, unless one is given; the one made (to remove) or ``None``."""
    made = None if ENV in os.environ else tempfile.mkdtemp(prefix=_DIR_PREFIX)
    if made:
        os.environ[ENV] = made
    return made


def remove_directory(made: str | None) -> None:
    """In the main process, once the workers are gone: remove the directory it made."""
    if made:
        os.environ.pop(ENV, None)
        shutil.rmtree(made, ignore_errors=True)
