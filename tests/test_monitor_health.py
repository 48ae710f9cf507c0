"""The monitor's own health on /metrics: exact lines, workers combined per family's mode,
and the counters of a real app whose database is down and whose plugins fail."""

from __future__ import annotations

import re
import time

import httpx
from apps.faulty_plugins import HangingOncePlugin, RaisingPlugin
from servers import free_port
from test_plugins import until

from luna_monitoring.core.metric_files import MetricFiles
from luna_monitoring.core.monitor_health import Health, HealthMetrics

SERVICE = "luna-remote-sdk"
S = f'service="{SERVICE}"'
RAISING = "apps.faulty_plugins:RaisingPlugin"
HANGING = "apps.faulty_plugins:HangingOncePlugin"
HEALTH = re.compile(r"^monitoring_\w+(\{[^}]*\})? ")


def stats(**values: int) -> dict[str, int]:
    keys = ("points_buffered", "points_written", "points_dropped", "points_rejected")
    return dict.fromkeys((*keys, "write_errors", "retries"), 0) | values


def health_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if HEALTH.match(line))


class Worker:
    """One worker's HealthMetrics over its own files, fed a given :class:`Health`."""

    def __init__(self, directory: str, extra_labels: dict | None = None) -> None:
        self.files = MetricFiles(directory, extra_labels or {})
        self.health = Health(stats(), {})
        self.metrics = HealthMetrics(self.files, SERVICE, lambda: self.health)

    def copy(self, stats: dict[str, int], plugins: dict | None = None) -> str:
        self.health = Health(stats, plugins or {})
        self.metrics.update()
        return self.files.exposition().decode()


class TestExactLines:
    def test_every_health_family(self, tmp_path):
        """Each writer and plugin counter as its family; the last write's time once points
        were written."""
        worker = Worker(str(tmp_path))
        before = time.time()
        text = worker.copy(
            stats(points_buffered=7, points_written=120, points_dropped=3, points_rejected=2)
            | {"write_errors": 4, "retries": 5, "points_invalid": 1},
            {"my.plugins:Audit": (6, 1, 9), "my.plugins:Other": (0, 0, 0)},
        )
        last = text.split("monitoring_last_write_timestamp_seconds{")[1].split()[1]
        assert before <= float(last) <= time.time()
        assert health_lines(text) == [
            f"monitoring_last_write_timestamp_seconds{{{S}}} {last}",
            f'monitoring_plugin_errors_total{{plugin="my.plugins:Audit",{S}}} 6.0',
            f'monitoring_plugin_errors_total{{plugin="my.plugins:Other",{S}}} 0.0',
            f'monitoring_plugin_points_dropped_total{{plugin="my.plugins:Audit",{S}}} 9.0',
            f'monitoring_plugin_points_dropped_total{{plugin="my.plugins:Other",{S}}} 0.0',
            f'monitoring_plugin_timeouts_total{{plugin="my.plugins:Audit",{S}}} 1.0',
            f'monitoring_plugin_timeouts_total{{plugin="my.plugins:Other",{S}}} 0.0',
            f"monitoring_points_buffered{{{S}}} 7.0",
            f"monitoring_points_dropped_total{{{S}}} 3.0",
            f"monitoring_points_rejected_total{{{S}}} 2.0",
            f"monitoring_points_written_total{{{S}}} 120.0",
            f"monitoring_write_errors_total{{{S}}} 4.0",
            f"monitoring_write_retries_total{{{S}}} 5.0",
        ]
        worker.files.close()

    def test_no_last_write_before_a_write(self, tmp_path):
        """Until points were written there is no last-write time (not a misleading 0)."""
        worker = Worker(str(tmp_path))
        assert "monitoring_last_write_timestamp_seconds{" not in worker.copy(stats())
        worker.files.close()

    def test_last_write_moves_only_when_points_were_written(self, tmp_path):
        """Another copy with the same points_written keeps the time."""
        worker = Worker(str(tmp_path))

        def last(text: str) -> float:
            return float(text.split("monitoring_last_write_timestamp_seconds{")[1].split()[1])

        first = last(worker.copy(stats(points_written=10)))
        time.sleep(0.01)
        assert last(worker.copy(stats(points_written=10, write_errors=3))) == first
        assert last(worker.copy(stats(points_written=11))) > first
        worker.files.close()

    def test_extra_labels(self, tmp_path):
        """Extra labels on every health sample."""
        worker = Worker(str(tmp_path), {"dc": "eu"})
        lines = health_lines(worker.copy(stats(points_written=1), {"p:P": (1, 0, 0)}))
        assert len(lines) == 10
        assert all('dc="eu"' in line for line in lines)
        worker.files.close()


class TestWorkers:
    def test_counters_summed_buffered_over_live_workers_last_write_newest(self, tmp_path):
        """Counters add up (a stopped worker's stay), buffered points are those of the live
        workers, the last write is the newest of all."""
        one, two = Worker(str(tmp_path)), Worker(str(tmp_path))
        one.copy(stats(points_buffered=5, points_written=10, write_errors=1), {"p:P": (2, 1, 0)})
        text = two.copy(stats(points_buffered=7, points_written=30), {"p:P": (3, 0, 4)})
        last_two = two.files.gauges("max").read_value(
            two.files.key("monitoring_last_write_timestamp_seconds", SERVICE, ())
        )[0]
        got = dict(line.rsplit(" ", 1) for line in health_lines(text))
        assert got[f"monitoring_points_buffered{{{S}}}"] == "12.0"
        assert got[f"monitoring_points_written_total{{{S}}}"] == "40.0"
        assert got[f"monitoring_write_errors_total{{{S}}}"] == "1.0"
        assert got[f'monitoring_plugin_errors_total{{plugin="p:P",{S}}}'] == "5.0"
        assert got[f'monitoring_plugin_timeouts_total{{plugin="p:P",{S}}}'] == "1.0"
        assert got[f'monitoring_plugin_points_dropped_total{{plugin="p:P",{S}}}'] == "4.0"
        assert float(got[f"monitoring_last_write_timestamp_seconds{{{S}}}"]) == last_two
        one.metrics.stop()  # a last copy, then the worker stops
        one.files.close()
        got = dict(line.rsplit(" ", 1) for line in health_lines(two.files.exposition().decode()))
        assert got[f"monitoring_points_buffered{{{S}}}"] == "7.0"
        assert got[f"monitoring_points_written_total{{{S}}}"] == "40.0"
        two.files.close()


class TestApp:
    async def test_database_down_and_failing_plugins(self, make_app, serve_app):
        """Nothing listens on the database port and two plugins fail: the families show the
        writer's and the runner's own counters, exactly."""
        app = make_app(
            extension_plugins=(RaisingPlugin, HangingOncePlugin),
            port=free_port(),
            plugin_timeout_s=0.3,
            max_retry_delay_s=0.2,
            shutdown_timeout_s=0.2,  # nothing listens: the final flush cannot deliver
            prometheus={"enabled": True},
        )
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            for _ in range(50):
                assert (await client.get("/nothing")).status_code == 404
            monitoring = app.ctx.monitoring
            await until(lambda: monitoring.stats["write_errors"] >= 3, timeout=20)
            await until(lambda: monitoring.stats["plugin_timeouts"] == 1, timeout=20)
            # a requests and an errors point per request
            await until(lambda: monitoring.stats["plugin_errors"] == 100, timeout=20)
            app.ctx.monitoring_prometheus.health.update()
            current = monitoring.stats  # nothing ran between the copy and this
            text = app.ctx.monitoring_prometheus.exposition().decode()
        got = dict(line.rsplit(" ", 1) for line in health_lines(text))
        assert got == {
            f"monitoring_points_buffered{{{S}}}": "100.0",
            f"monitoring_points_written_total{{{S}}}": "0.0",
            f"monitoring_points_dropped_total{{{S}}}": "0.0",
            f"monitoring_points_rejected_total{{{S}}}": "0.0",
            f"monitoring_write_errors_total{{{S}}}": f"{float(current['write_errors'])}",
            f"monitoring_write_retries_total{{{S}}}": f"{float(current['retries'])}",
            f'monitoring_plugin_errors_total{{plugin="{RAISING}",{S}}}': "100.0",
            f'monitoring_plugin_errors_total{{plugin="{HANGING}",{S}}}': "0.0",
            f'monitoring_plugin_timeouts_total{{plugin="{RAISING}",{S}}}': "0.0",
            f'monitoring_plugin_timeouts_total{{plugin="{HANGING}",{S}}}': "1.0",
            f'monitoring_plugin_points_dropped_total{{plugin="{RAISING}",{S}}}': "0.0",
            f'monitoring_plugin_points_dropped_total{{plugin="{HANGING}",{S}}}': "0.0",
        }
