"""The monitor's own health as Prometheus metrics: the writer's and the plugins' counters.

Every ``HEALTH_PERIOD_S`` a background task of each worker copies its counters into its
metric files (and once more when it stops), so whichever worker answers a scrape shows all
workers: counters summed (a stopped worker's totals stay), ``monitoring_points_buffered``
summed over live workers, ``monitoring_last_write_timestamp_seconds`` the newest of all.
Nothing of this runs on the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .metric_files import FAMILY, MetricFiles

HEALTH_PERIOD_S = 1.0
_COUNTERS = {  # writer stats key -> family
    "points_written": "monitoring_points_written_total",
    "points_dropped": "monitoring_points_dropped_total",
    "points_rejected": "monitoring_points_rejected_total",
    "write_errors": "monitoring_write_errors_total",
    "retries": "monitoring_write_retries_total",
}
_PLUGIN_COUNTERS = (
    "monitoring_plugin_errors_total",
    "monitoring_plugin_timeouts_total",
    "monitoring_plugin_points_dropped_total",
)
_BUFFERED = "monitoring_points_buffered"
_LAST_WRITE = "monitoring_last_write_timestamp_seconds"


class Health(NamedTuple):
    """A snapshot of one worker's counters."""

    stats: Mapping[str, int]
    """The writer's ``stats``."""
    plugins: Mapping[str, tuple[int, int, int]]
    """Plugin name -> (errors, timeouts, points dropped)."""


def read_health(monitoring: Any) -> Health | None:
    """The health of a worker's runtime object (``None`` before it exists)."""
    if monitoring is None:
        return None
    plugins: dict[str, tuple[int, int, int]] = {}
    for sink in monitoring.writer.sinks:
        plugins.update(getattr(sink, "failures", {}))
    return Health(monitoring.writer.stats, plugins)


class HealthMetrics:
    """Copies a worker's :class:`Health` into its metric files.

    ``monitoring_last_write_timestamp_seconds`` is the time at which a copy first saw
    ``points_written`` grow: at most ``HEALTH_PERIOD_S`` after the write.
    """

    def __init__(self, files: MetricFiles, service: str, read: Callable[[], Health | None]) -> None:
        self._files = files
        self._read = read
        self._keys = {
            name: files.key(name, service, ())
            for name in (*_COUNTERS.values(), _BUFFERED, _LAST_WRITE)
        }
        self._service = service
        self._plugin_keys: dict[str, tuple[str, ...]] = {}
        self._written = 0
        self._task: asyncio.Task | None = None

    def update(self) -> None:
        """Copy the current counters into the files."""
        health = self._read()
        if health is None:
            return
        stats, files, keys = health.stats, self._files, self._keys
        for stat, name in _COUNTERS.items():
            files.counts.write_value(keys[name], float(stats.get(stat, 0)), 0.0)
        for plugin, counts in health.plugins.items():
            for key, count in zip(self._plugin(plugin), counts, strict=True):
                files.counts.write_value(key, float(count), 0.0)
        buffered = float(stats.get("points_buffered", 0))
        files.gauges(FAMILY[_BUFFERED].mode).write_value(keys[_BUFFERED], buffered, 0.0)
        written = stats.get("points_written", 0)
        if written > self._written:
            self._written = written
            now = time.time()
            files.gauges(FAMILY[_LAST_WRITE].mode).write_value(keys[_LAST_WRITE], now, now)

    def _plugin(self, plugin: str) -> tuple[str, ...]:
        keys = self._plugin_keys.get(plugin)
        if keys is None:
            keys = self._plugin_keys[plugin] = tuple(
                self._files.key(name, self._service, (plugin,)) for name in _PLUGIN_COUNTERS
            )
        return keys

    def start(self, period_s: float = HEALTH_PERIOD_S) -> None:
        """Start copying every ``period_s`` on the running loop."""
        self._task = asyncio.get_running_loop().create_task(
            self._loop(period_s), name="luna_monitoring.health"
        )

    async def _loop(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            self.update()

    def stop(self) -> None:
        """Stop the task and make a last copy (call before the files are closed)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.update()
