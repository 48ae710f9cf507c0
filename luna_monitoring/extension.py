"""MonitoringExtension: wiring only; the work lives in sibling modules."""

from __future__ import annotations

from sanic import Sanic
from sanic_ext import Extension

from .clock import UniqueClock
from .runtime import Monitoring
from .settings import Settings
from .storages import make_storage
from .writer import Writer


class MonitoringExtension(Extension):
    """Monitors every request of a Sanic app; configured by ``app.config.MONITORING``.

    >>> app.extend(extensions=[MonitoringExtension])
    """

    name = "monitoring"

    def startup(self, bootstrap) -> None:
        settings = Settings.from_config(self.app.config.get("MONITORING"))
        self.app.ctx.monitoring_settings = settings
        if not settings.send_data_for_monitoring:
            return
        self.app.before_server_start(_start)
        self.app.after_server_stop(_stop)


async def _start(app: Sanic) -> None:
    settings: Settings = app.ctx.monitoring_settings
    writer = Writer(settings, make_storage(settings))
    app.ctx.monitoring = Monitoring(settings, writer, UniqueClock())
    await writer.start()


async def _stop(app: Sanic) -> None:
    await app.ctx.monitoring.writer.stop()
