"""Plugins of a Sanic app: loaded at startup, run by each worker's :class:`PluginRunner`."""

from __future__ import annotations

from collections.abc import Iterable

from sanic import Sanic

from ..core.plugins import PluginRunner, PluginSpec, load_plugins
from ..core.settings import Settings


def setup_plugins(app: Sanic, settings: Settings, passed: Iterable[PluginSpec] = ()) -> None:
    """Load ``MONITORING["plugins"]`` and ``passed`` now (a bad one fails here)."""
    app.ctx.monitoring_plugin_classes = load_plugins((*settings.plugins, *passed))
    if app.ctx.monitoring_plugin_classes:
        app.after_server_start(_start_runner)


def start_plugins(app: Sanic, settings: Settings) -> PluginRunner | None:
    """Create this worker's :class:`PluginRunner`, the sink (``None``: no plugins).

    The plugins themselves are created and initialized once the server has started.
    """
    classes = app.ctx.monitoring_plugin_classes
    app.ctx.monitoring_plugins = PluginRunner(app, classes, settings) if classes else None
    return app.ctx.monitoring_plugins


async def stop_plugins(app: Sanic) -> None:
    """Deliver what is queued (bounded) and close the plugins; after the writer's stop."""
    if app.ctx.monitoring_plugins:
        await app.ctx.monitoring_plugins.stop()


def _start_runner(app: Sanic) -> None:
    app.ctx.monitoring_plugins.start()
