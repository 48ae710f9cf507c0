"""The aiohttp adapter: :func:`setup_monitoring` wires an ``aiohttp.web.Application``.

>>> app = web.Application()
>>> setup_monitoring(app, {"version": 1, "database": "luna_monitoring"})
>>> get_monitoring(app).record("licensing", tags=..., fields=...)   # in a worker

``config`` is the same dict as Sanic's ``MONITORING``; the points, tags and fields are the
same (routes spelled ``METHOD:/items/{item_id}``). What is set up:

* ``app[MONITORING]``: an :class:`AppMonitoring` (settings, and once the app has started
  the worker's runtime object, :func:`get_monitoring`).
* a cleanup context: at startup the worker's writer, plugins and Prometheus files; at
  cleanup (after the server stopped taking requests) the bounded final flush
  (``shutdown_timeout_s``) and the plugins' and files' close.
* the request factory, which makes monitored requests (see
  :mod:`luna_monitoring.aiohttp.request_hooks`), and with ``prometheus.enabled`` the
  ``GET prometheus.path`` route.

Call it on the root application, before it starts. Each worker process (``web.run_app``,
gunicorn's ``aiohttp.GunicornWebWorker``) gets its own runtime and a worker number of its
own for its timestamps (:class:`~luna_monitoring.core.worker_number.WorkerNumber`).
Prometheus numbers are summed over gunicorn's workers when ``PROMETHEUS_MULTIPROC_DIR``
names a directory they share; without it each worker serves its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web

from ..core.collector import register_request_type
from ..core.plugins import BaseRequestMonitoringPlugin, PluginRunner, PluginSpec, load_plugins
from ..core.prometheus import (
    CONTENT_TYPE,
    WorkerMetrics,
    is_metrics_path,
    open_metrics,
    require_client,
)
from ..core.request_points import add_request_fields, add_request_tags
from ..core.request_points import request_id as get_request_id
from ..core.runtime import Monitoring
from ..core.settings import MonitoringConfigError, Settings
from ..core.worker_number import WorkerNumber
from ..core.writer import Writer
from ..storages import make_storage
from .request_hooks import RequestHooks

__all__ = [
    "MONITORING",
    "AppMonitoring",
    "add_request_fields",
    "add_request_tags",
    "get_monitoring",
    "get_request_id",
    "setup_monitoring",
]


@dataclass(eq=False)
class AppMonitoring:
    """The monitoring of one app, ``app[MONITORING]``.

    ``runtime`` is this worker's :class:`~luna_monitoring.core.runtime.Monitoring`
    (``record``, ``report_license``, ``flush``, ``stats``) from startup on; ``None`` before,
    and always when ``send_data_for_monitoring`` is off.
    """

    settings: Settings
    plugin_classes: tuple[type[BaseRequestMonitoringPlugin], ...] = ()
    hooks: RequestHooks | None = None
    runtime: Monitoring | None = None
    plugins: PluginRunner | None = None
    metrics: WorkerMetrics | None = None
    worker: WorkerNumber | None = field(default=None, repr=False)


MONITORING = web.AppKey("luna_monitoring", AppMonitoring)
"""The app key of :class:`AppMonitoring`."""


def setup_monitoring(
    app: web.Application,
    config: Mapping[str, Any] | None,
    *,
    plugins: Sequence[PluginSpec] = (),
) -> AppMonitoring:
    """Monitor every request of ``app`` as configured by ``config`` (Sanic's ``MONITORING``).

    ``plugins``: plugin classes (or ``"module:Class"``) besides ``config["plugins"]``. A bad
    ``config`` or plugin, or a second call for the same app, raises
    :class:`~luna_monitoring.MonitoringConfigError` here.
    """
    if MONITORING in app:
        raise MonitoringConfigError(
            "setup_monitoring: this app is monitored already; call it once, on the root app"
        )
    settings = Settings.from_config(config)
    state = app[MONITORING] = AppMonitoring(settings)
    if not settings.send_data_for_monitoring:
        return state
    state.plugin_classes = load_plugins((*settings.plugins, *plugins))
    require_client(settings)
    if settings.prometheus.enabled:
        app.router.add_get(settings.prometheus.path, _serve_metrics, name="luna_metrics")
    hooks = state.hooks = RequestHooks(settings, skip_route=partial(is_metrics_path, settings))
    app._make_request = partial(app._make_request, _cls=hooks.request_class(web.Request, state))
    app.cleanup_ctx.append(_lifetime)
    return state


def get_monitoring(app_or_request: web.Application | web.BaseRequest) -> Monitoring | None:
    """This worker's runtime object of the app (or of the request's app); ``None`` before
    startup or when monitoring is off."""
    if isinstance(app_or_request, web.BaseRequest):
        return _runtime_of_request(app_or_request)
    state = app_or_request.get(MONITORING)
    return state and state.runtime


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    state = app[MONITORING]
    settings = state.settings
    runner = state.plugins = (
        PluginRunner(app, state.plugin_classes, settings) if state.plugin_classes else None
    )
    metrics = state.metrics = open_metrics(settings, lambda: state.runtime)
    sinks = [sink for sink in (runner, metrics and metrics.points.feed) if sink]
    writer = Writer(settings, make_storage(settings), sinks)
    worker = state.worker = WorkerNumber.claim()
    runtime = state.runtime = Monitoring(settings, writer, worker.clock(settings.instance_offset))
    state.hooks.bind(runtime.clock.now_ns, runtime.emit)
    await writer.start()
    if runner:
        runner.start()
    try:
        yield
    finally:
        await writer.stop()
        if runner:
            await runner.stop()
        if metrics:
            metrics.close()
            state.metrics = None
        worker.release()


async def _serve_metrics(request: web.Request) -> web.Response:
    metrics = request.config_dict[MONITORING].metrics
    if metrics is None:
        raise web.HTTPServiceUnavailable()
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


def _runtime_of_request(request: web.BaseRequest) -> Monitoring | None:
    state = getattr(request, "_luna_state", None)
    return state and state.runtime


def _runtime_of_view(view: web.View) -> Monitoring | None:
    return _runtime_of_request(view.request)


register_request_type(web.BaseRequest, _runtime_of_request)
register_request_type(web.View, _runtime_of_view)
