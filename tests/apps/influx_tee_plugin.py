"""A monitoring plugin that also writes every point to InfluxDB 1.x through this package's
``Writer``: with ``storage_type: "clickhouse"`` the same points land in both databases.

Configured by environment: ``TEE_INFLUX_PORT`` and ``TEE_INFLUX_DATABASE`` (127.0.0.1).
"""

from __future__ import annotations

import os

from luna_monitoring import BaseRequestMonitoringPlugin
from luna_monitoring.core.point import Point
from luna_monitoring.core.settings import Settings
from luna_monitoring.core.writer import Writer
from luna_monitoring.storages import make_storage


class InfluxTeePlugin(BaseRequestMonitoringPlugin):
    """Appends every point to a second ``Writer`` that writes to InfluxDB 1.x."""

    writer: Writer

    async def initialize(self) -> None:
        """Start the InfluxDB writer."""
        settings = Settings.from_config(
            {
                "version": 1,
                "port": int(os.environ["TEE_INFLUX_PORT"]),
                "database": os.environ["TEE_INFLUX_DATABASE"],
                "flushing_period": 0.2,
            }
        )
        self.writer = Writer(settings, make_storage(settings))
        await self.writer.start()

    async def flush_point_to_monitoring(self, point: Point) -> None:
        """Buffer the point for InfluxDB."""
        self.writer.append(point)

    async def close(self) -> None:
        """Write what is left."""
        await self.writer.stop()
