"""MonitoringExtension: wiring only; the work lives in sibling modules."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial

from sanic import Sanic
from sanic_ext import Extension

from ..core.plugins import PluginSpec
from ..core.runtime import Monitoring, draw_instance_offset, instance_offset, worker_clock
from ..core.settings import Settings
from ..core.writer import Writer
from ..storages import make_storage
from .decorator_order import check_decorator_order
from .plugins import setup_plugins, start_plugins, stop_plugins
from .prometheus_route import is_metrics_route, setup_prometheus, start_prometheus, stop_prometheus
from .request_hooks import RequestHooks


class MonitoringExtension(Extension):
    """Monitors every request of a Sanic app; configured by ``app.config.MONITORING``.

    >>> app.config.MONITORING = {"version": 1, "database": "luna_monitoring"}
    >>> app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
    >>> app.extend(extensions=[MonitoringExtension(plugins=[AuditPlugin])])

    A bad ``MONITORING`` raises :class:`MonitoringConfigError` from ``app.extend``.
    """

    name = "monitoring"

    def __init__(self, *, plugins: Sequence[PluginSpec] = ()) -> None:
        self.plugins = tuple(plugins)

    def startup(self, bootstrap) -> None:
        app = self.app
        settings = app.ctx.monitoring_settings = Settings.from_config(app.config.get("MONITORING"))
        app.ctx.monitoring = None
        if not settings.send_data_for_monitoring:
            return
        setup_plugins(app, settings, self.plugins)
        setup_prometheus(app, settings)
        hooks = app.ctx.monitoring_hooks = RequestHooks(
            settings, skip_route=partial(is_metrics_route, app)
        )
        app.request_class = hooks.request_class(app.request_class)
        app.main_process_start(_draw_instance_offset)
        # In the main process too: a worker failing its start leaves Sanic's main hanging.
        app.main_process_start(check_decorator_order)
        app.before_server_start(check_decorator_order)
        app.before_server_start(_start)
        app.after_server_stop(_stop)


def _draw_instance_offset(app: Sanic) -> None:
    """In the main process, before the workers exist: they inherit the drawn offset."""
    if app.ctx.monitoring_settings.instance_offset == "random":
        draw_instance_offset()


async def _start(app: Sanic) -> None:
    settings: Settings = app.ctx.monitoring_settings
    sinks = [start_plugins(app, settings), start_prometheus(app, settings)]
    writer = Writer(settings, make_storage(settings), [sink for sink in sinks if sink])
    # Sanic's server workers (SANIC_WORKER_NAME set) share their main process's offset.
    spawned = bool(os.environ.get("SANIC_WORKER_NAME"))
    clock = worker_clock(offset=instance_offset(settings.instance_offset, spawned_worker=spawned))
    monitoring = app.ctx.monitoring = Monitoring(settings, writer, clock)
    app.ctx.monitoring_hooks.bind(monitoring.clock.now_ns, monitoring.emit)
    await writer.start()


async def _stop(app: Sanic) -> None:
    await app.ctx.monitoring.writer.stop()
    await stop_plugins(app)
    stop_prometheus(app)
