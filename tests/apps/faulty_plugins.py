"""Plugins that fail on purpose, for the monitor-health metrics."""

from __future__ import annotations

import asyncio

from luna_monitoring import BaseRequestMonitoringPlugin


class RaisingPlugin(BaseRequestMonitoringPlugin):
    """Raises on every point."""

    async def flush_point_to_monitoring(self, point) -> None:
        raise RuntimeError(f"cannot handle {point.series}")


class HangingOncePlugin(BaseRequestMonitoringPlugin):
    """Hangs on its first point (cancelled after ``plugin_timeout_s``), then returns."""

    hung = False

    async def flush_point_to_monitoring(self, point) -> None:
        if not self.hung:
            self.hung = True
            await asyncio.sleep(3600)
