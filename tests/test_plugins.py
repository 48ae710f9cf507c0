"""Plugins: loading, per-worker delivery, failure isolation, shutdown, the example plugin."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from sanic.response import text
from servers import InfluxDatabase
from test_prometheus import MetricsApp

from example_app.plugins import JsonLinesPlugin
from luna_monitoring import BaseRequestMonitoringPlugin, MonitoringConfigError
from luna_monitoring.core.logs import worker_label
from luna_monitoring.core.plugins import PluginRunner, load_plugins
from luna_monitoring.core.point import Point
from luna_monitoring.core.settings import Settings


class Recorder(BaseRequestMonitoringPlugin):
    """Records its lifecycle and every point."""

    def __init__(self, app):
        super().__init__(app)
        self.events: list[str] = ["created"]
        self.points: list[Point] = []

    async def initialize(self):
        self.events.append("initialized")

    async def flush_point_to_monitoring(self, point):
        self.points.append(point)

    async def close(self):
        self.events.append(f"closed after {len(self.points)} points")


class Raising(Recorder):
    async def flush_point_to_monitoring(self, point):
        raise RuntimeError(f"plugin bug at {point.time_ns}")


class Hanging(Recorder):
    async def flush_point_to_monitoring(self, point):
        await asyncio.sleep(3600)


class TimedHang(Recorder):
    """Hangs on every point; records how long each call lasted until it was cut."""

    async def flush_point_to_monitoring(self, point):
        began = time.monotonic()
        try:
            await asyncio.sleep(3600)
        finally:
            self.points.append(time.monotonic() - began)


class SwallowsCancel(Recorder):
    async def flush_point_to_monitoring(self, point):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.points.append(point)


class OwnCancel(Recorder):
    async def flush_point_to_monitoring(self, point):
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future


class Slow(Recorder):
    async def flush_point_to_monitoring(self, point):
        await asyncio.sleep(0.05)
        self.points.append(point)


class FailingInitialize(Recorder):
    async def initialize(self):
        raise ConnectionError("backend down")


class FailingConstructor(Recorder):
    def __init__(self, app):
        raise ValueError("bad config")


class NotAPlugin:
    async def flush_point_to_monitoring(self, point): ...


class Abstract(BaseRequestMonitoringPlugin):
    pass


class SyncFlush(BaseRequestMonitoringPlugin):
    def flush_point_to_monitoring(self, point): ...


def points(n: int, series: str = "requests") -> list[Point]:
    return [Point(series, i, {"service": "s"}, {"request_id": str(i)}) for i in range(n)]


def make_runner(*classes, **config) -> PluginRunner:
    settings = Settings.from_config({"plugin_timeout_s": 0.2, "shutdown_timeout_s": 1, **config})
    return PluginRunner(SimpleNamespace(name="app"), classes, settings)


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check()`` until it is truthy, without blocking the loop; return its value."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        await asyncio.sleep(0.01)
    return result


async def delivered(runner: PluginRunner, cls: type, n: int) -> list[Point]:
    """Wait until the runner's plugin of class ``cls`` holds ``n`` points; return them."""
    return await until(
        lambda: next(
            (p.points for p in runner.plugins if type(p) is cls and len(p.points) >= n), None
        )
    )


class TestLoading:
    def test_class_and_path_resolve_to_the_class_loaded_once(self):
        """A class given as itself and as its path is one plugin."""
        assert load_plugins([Recorder, "test_plugins:Recorder"]) == (Recorder,)

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("no_such_module.sub:Plugin", "'no_such_module.sub:Plugin': cannot import module"),
            ("test_plugins:Missing", "'test_plugins:Missing': module 'test_plugins' has no"),
            ("test_plugins:NotAPlugin", "'test_plugins:NotAPlugin': not a subclass"),
            (NotAPlugin, "'NotAPlugin': not a subclass of BaseRequestMonitoringPlugin"),
            ("test_plugins:Abstract", "does not implement flush_point_to_monitoring"),
            (SyncFlush, "'SyncFlush': flush_point_to_monitoring must be an async def"),
            (Recorder(None), "an instance; pass the class"),
        ],
    )
    def test_bad_plugin_is_named(self, spec, message):
        with pytest.raises(MonitoringConfigError, match=message.replace("(", r"\(")):
            load_plugins([spec])

    def test_path_without_a_colon_names_the_form(self):
        """``myplugin.CountingPlugin`` is not imported as a module: the message shows the form."""
        with pytest.raises(MonitoringConfigError) as info:
            load_plugins(["myplugin.CountingPlugin"])
        assert str(info.value) == (
            "monitoring plugin 'myplugin.CountingPlugin': expected \"package.module:ClassName\", "
            "a colon before the class name (e.g. myplugin:CountingPlugin)"
        )


class TestDelivery:
    async def test_lifecycle_order_and_every_point_in_order(self):
        runner = make_runner(Recorder)
        runner.feed(points(3))
        assert runner.plugins == []  # created only once the server has started
        runner.start()
        runner.feed(points(5))
        got = await delivered(runner, Recorder, 8)
        assert [p.time_ns for p in got] == [0, 1, 2, 0, 1, 2, 3, 4]
        await runner.stop()
        assert runner.plugins[0].events == ["created", "initialized", "closed after 8 points"]
        assert runner.stats["plugin_points_delivered"] == 8

    async def test_raising_plugin_is_counted_and_logged_once(self, caplog):
        runner = make_runner(Raising, Recorder)
        runner.start()
        with caplog.at_level(logging.ERROR, logger="luna_monitoring.core.plugins"):
            runner.feed(points(50))
            assert len(await delivered(runner, Recorder, 50)) == 50
            await runner.stop()
        assert runner.stats["plugin_errors"] == 50
        logged = [r for r in caplog.records if "test_plugins:Raising" in r.getMessage()]
        assert len(logged) == 1
        assert logged[0].getMessage() == (
            f"monitoring plugin test_plugins:Raising: flush_point_to_monitoring raised "
            f"[{worker_label()}]"
        )  # the first message: nothing held back to mention
        assert "plugin bug at 0" in str(logged[0].exc_info[1])

    async def test_hanging_plugin_times_out_without_delaying_others(self):
        runner = make_runner(Hanging, Recorder, plugin_timeout_s=1, shutdown_timeout_s=0.2)
        runner.start()
        began = time.monotonic()
        runner.feed(points(3))
        assert len(await delivered(runner, Recorder, 3)) == 3
        assert time.monotonic() - began < 0.9  # did not wait for the hanging call
        await until(lambda: runner.stats["plugin_timeouts"])
        await runner.stop()
        assert runner.stats["plugin_timeouts"] == 1
        assert runner.stats["plugin_errors"] == 0

    async def test_every_call_gets_the_whole_bound(self):
        runner = make_runner(TimedHang, plugin_timeout_s=0.1)
        runner.start()
        runner.feed(points(3))
        durations = await delivered(runner, TimedHang, 3)
        await runner.stop()
        assert runner.stats["plugin_timeouts"] == 3
        assert all(0.1 <= d < 1.0 for d in durations), durations

    async def test_calls_within_the_bound_are_never_cut(self):
        runner = make_runner(Slow, plugin_timeout_s=0.08)  # each call takes 0.05 s
        runner.start()
        runner.feed(points(6))
        await delivered(runner, Slow, 6)
        await runner.stop()
        assert runner.stats["plugin_timeouts"] == 0
        assert runner.stats["plugin_points_delivered"] == 6

    async def test_swallowed_cancellation_counts_as_timeout_and_delivery_goes_on(self):
        runner = make_runner(SwallowsCancel, plugin_timeout_s=0.05)
        runner.start()
        runner.feed(points(3))
        await delivered(runner, SwallowsCancel, 3)
        await runner.stop()
        assert runner.stats["plugin_timeouts"] == 3

    async def test_plugin_own_cancelled_error_is_an_error(self):
        runner = make_runner(OwnCancel, Recorder)
        runner.start()
        runner.feed(points(3))
        await delivered(runner, Recorder, 3)
        await until(lambda: runner.stats["plugin_errors"] == 3)
        await runner.stop()
        assert runner.stats["plugin_timeouts"] == 0
        assert runner.plugins[0].events[-1] == "closed after 0 points"

    async def test_full_queue_drops_oldest_and_counts(self):
        runner = make_runner(Slow, max_buffer_points=10)
        runner.start()
        runner.feed(points(25))
        await delivered(runner, Slow, 10)
        await runner.stop()
        assert runner.stats["plugin_points_dropped"] == 15
        assert [p.time_ns for p in runner.plugins[0].points] == list(range(15, 25))

    @pytest.mark.parametrize("broken", [FailingInitialize, FailingConstructor])
    async def test_plugin_failing_to_start_is_disabled_alone(self, broken, caplog):
        runner = make_runner(broken, Recorder)
        runner.start()
        runner.feed(points(4))
        assert len(await delivered(runner, Recorder, 4)) == 4
        await runner.stop()
        assert runner.stats["plugin_errors"] == 1
        assert runner.stats["plugin_points_dropped"] == 0
        assert f"test_plugins:{broken.__qualname__} is disabled" in caplog.text


class TestShutdown:
    async def test_queued_points_are_delivered_before_close(self):
        runner = make_runner(Slow)
        runner.start()
        runner.feed(points(10))
        await runner.stop()
        assert runner.plugins[0].events[-1] == "closed after 10 points"

    async def test_hanging_plugin_is_cut_off_at_the_bound(self):
        runner = make_runner(Hanging, Recorder, plugin_timeout_s=5, shutdown_timeout_s=0.3)
        runner.start()
        runner.feed(points(4))
        await delivered(runner, Recorder, 4)
        began = time.monotonic()
        await runner.stop()
        assert time.monotonic() - began < 1.5
        assert runner.stats["plugin_points_dropped"] == 3  # the first was being handled
        assert runner.plugins[0].events[-1] == "closed after 0 points"
        assert runner.plugins[1].events[-1] == "closed after 4 points"


class TestWithServer:
    async def test_failing_plugins_change_nothing_for_responses_db_or_others(
        self, make_app, serve_app, influx_db: InfluxDatabase
    ):
        app = make_app(
            extension_plugins=[Raising, Hanging],
            plugins=["test_plugins:Recorder"],
            plugin_timeout_s=0.2,
            shutdown_timeout_s=0.5,
        )

        @app.get("/hello")
        async def hello(request):
            return text("hello")

        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            began = time.monotonic()
            responses = [await client.get("/hello") for _ in range(20)]
            elapsed = time.monotonic() - began
            await app.ctx.monitoring.flush()
            runner = app.ctx.monitoring_plugins
            got = await delivered(runner, Recorder, 20)
            await until(lambda: runner.stats["plugin_timeouts"])
        assert [(r.status_code, r.text) for r in responses] == [(200, "hello")] * 20
        assert elapsed < 20 * 0.2  # far less: the hanging plugin is not on the request path
        assert [type(p) for p in runner.plugins] == [Recorder, Raising, Hanging]
        assert [p.fields["request_id"] for p in got] == [
            r.headers["LUNA-Request-Id"] for r in responses
        ]
        assert {p.series for p in got} == {"requests"}
        assert influx_db.count("requests") == 20
        stats = app.ctx.monitoring.stats
        assert stats["plugin_errors"] == 20
        assert stats["plugin_points_delivered"] == 20

    @pytest.mark.parametrize(
        ("passed", "configured", "named"),
        [
            ((), ["luna_monitoring.no_such_module:Plugin"], "luna_monitoring.no_such_module"),
            ((), ["test_plugins:NoSuchClass"], "test_plugins:NoSuchClass"),
            ((NotAPlugin,), [], "NotAPlugin"),
        ],
    )
    def test_bad_plugin_fails_at_startup_naming_it(self, make_app, passed, configured, named):
        with pytest.raises(MonitoringConfigError, match=f"monitoring plugin '{named}"):
            make_app(extension_plugins=passed, plugins=configured)

    async def test_a_plugin_in_config_and_extension_runs_once(self, make_app, serve_app):
        """Given twice (config and ``MonitoringExtension(plugins=...)``): one instance."""
        app = make_app(extension_plugins=(Recorder,), plugins=["test_plugins:Recorder"])
        await serve_app(app)
        app.ctx.monitoring.record("licensing", tags={"license_status": "warning"})
        [plugin] = await until(lambda: app.ctx.monitoring_plugins.plugins)
        await until(lambda: len(plugin.points) == 1)
        assert app.ctx.monitoring_plugin_classes == (Recorder,)


class TestPerWorker:
    def test_each_worker_creates_initializes_feeds_and_closes_its_plugin_once(
        self, tmp_path, influx_db: InfluxDatabase
    ):
        jsonl = tmp_path / "points.jsonl"
        monitoring = {
            "version": 1,
            "port": influx_db.server.port,
            "database": influx_db.name,
            "plugins": ["example_app.plugins:JsonLinesPlugin"],
        }
        env = {"SANIC_MONITORING_JSONL_PATH": str(jsonl)}
        with MetricsApp(tmp_path, workers=2, env=env, **monitoring) as app:
            responses = app.ping_until_every_worker_served(least=20, most=400)
            assert app.stop() == 0
            events = app.events()
        by_pid: dict[str, list[str]] = {}
        for line in events:
            pid, _, event = line.partition(" ")
            by_pid.setdefault(pid, []).append(event)
        assert len(by_pid) == 2
        sent = {r.headers["LUNA-Request-Id"] for r in responses}
        received = []
        for pid_events in by_pid.values():
            assert pid_events[:2] == ["created", "initialized"]
            assert pid_events[-1] == "closed"
            received += [e.split()[-1] for e in pid_events[2:-1]]
        assert sorted(received) == sorted(sent)
        assert influx_db.count("requests") == len(sent)
        lines = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
        assert sorted(line["fields"]["request_id"] for line in lines) == sorted(sent)


class TestJsonLinesPlugin:
    async def test_appends_every_point_as_one_json_line(self, tmp_path):
        path = tmp_path / "points.jsonl"
        app = SimpleNamespace(config={"MONITORING_JSONL_PATH": str(path)})
        written = [
            Point("requests", 7, {"service": "s", "route": "GET:/"}, {"execution_time": 0.5}),
            Point("licensing", 8, {"service": "s"}, {"liveness_balance": 3, "warnings": "[]"}),
        ]
        runner = PluginRunner(app, [JsonLinesPlugin], Settings())
        runner.start()
        runner.feed(written)
        await runner.stop()
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert lines == [
            {
                "series": "requests",
                "time_ns": 7,
                "tags": {"service": "s", "route": "GET:/"},
                "fields": {"execution_time": 0.5},
            },
            {
                "series": "licensing",
                "time_ns": 8,
                "tags": {"service": "s"},
                "fields": {"liveness_balance": 3, "warnings": "[]"},
            },
        ]
