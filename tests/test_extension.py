"""MonitoringExtension: wiring, config errors, the per-worker runtime, ``app.run(workers=N)``."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sanic
from sanic import Blueprint, Request, Sanic
from sanic.response import text
from servers import (
    InfluxDatabase,
    free_port,
    http_request,
    spawn_app,
    unique_name,
    wait_until,
)

from luna_monitoring import (
    BaseRequestMonitoringPlugin,
    MonitoringConfigError,
    MonitoringExtension,
    monitored_estimation,
)
from luna_monitoring.core.request_id import is_request_id
from luna_monitoring.core.runtime import (
    INSTANCE_OFFSET_ENV,
    WORKER_STRIDE,
    Monitoring,
    draw_instance_offset,
    instance_offset,
    worker_clock,
)

APP = Path(__file__).parent / "apps" / "requests_app.py"
HEADER = "LUNA-Request-Id"


@pytest.fixture
def new_app() -> Iterator[type[Sanic]]:
    """``new_app()`` -> a uniquely named Sanic app, removed from the registry afterwards."""
    Sanic.test_mode = True
    apps: list[Sanic] = []

    def factory() -> Sanic:
        app = Sanic(unique_name("ext"))
        apps.append(app)

        @app.get("/")
        async def hello(request):
            return text("hello")

        return app

    yield factory
    for app in apps:
        Sanic._app_registry.pop(app.name, None)


def influx_config(db: InfluxDatabase, **overrides) -> dict:
    return {
        "version": 1,
        "port": db.server.port,
        "database": db.name,
        "flushing_period": 0.1,
        **overrides,
    }


class Recorder(BaseRequestMonitoringPlugin):
    """Keeps every point it is given."""

    async def initialize(self) -> None:
        self.points = []

    async def flush_point_to_monitoring(self, point) -> None:
        self.points.append(point)


class TestConfiguration:
    @pytest.mark.parametrize(
        ("config", "named"),
        [
            ({"flushing_period": "soon"}, "flushing_period"),
            ({"version": 3}, "version"),
            ({"bucket_name": "x"}, "bucket_name"),
            ({"excluded_routes": ["("]}, "excluded_routes"),
            ({"host": "http://127.0.0.1"}, r"host'\]: .*use 'url'"),
            ({"host": "127.0.0.1:58837"}, r"host'\]: .*use 'url'"),
            ({"url": "http://h:1", "port": 1}, "'url' and 'port' both given"),
        ],
    )
    def test_bad_config_fails_at_extend_naming_the_key(self, new_app, config, named):
        app = new_app()
        app.config.MONITORING = config
        with pytest.raises(MonitoringConfigError, match=named):
            app.extend(extensions=[MonitoringExtension])

    def test_bad_config_stops_a_multi_worker_service_with_the_message(self, tmp_path):
        service = _start_service(tmp_path, {"flushing_period": -1}, workers=2)
        assert service.wait(30) != 0
        assert "MonitoringConfigError: MONITORING['flushing_period']" in service.log()

    def test_extension_instance_keeps_its_plugins(self, new_app):
        app = new_app()
        extension = MonitoringExtension(plugins=[Recorder])
        app.extend(extensions=[extension], built_in_extensions=False)
        assert extension.plugins == (Recorder,)
        assert extension in app.ext.extensions


class TestRuntime:
    async def test_each_worker_gets_a_monitoring_that_writes(self, new_app, serve_app, influx_db):
        app = new_app()
        app.config.MONITORING = influx_config(influx_db)
        app.extend(extensions=[MonitoringExtension(plugins=[Recorder])])
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            response = await client.get("/")
        monitoring = app.ctx.monitoring
        assert isinstance(monitoring, Monitoring)
        monitoring.record(
            "licensing", tags={"license_status": "warning"}, fields={"liveness_balance": 3}
        )
        assert await monitoring.flush()
        assert influx_db.count("requests") == influx_db.count("licensing") == 1
        assert monitoring.stats["points_written"] == 2
        assert {"points_buffered", "points_dropped", "write_errors"} <= set(monitoring.stats)
        [plugin] = app.ctx.monitoring_plugins.plugins
        await _until(lambda: len(plugin.points) == 2)
        assert plugin.points[0].fields["request_id"] == response.headers[HEADER]

    async def test_record_leaves_out_fields_it_cannot_take_and_writes_the_rest(
        self, new_app, serve_app, influx_db
    ):
        app = new_app()
        app.config.MONITORING = influx_config(influx_db)
        app.extend(extensions=[MonitoringExtension])
        await serve_app(app)
        fields = {"liveness_balance": "3", "warnings": '["low"]', "bogus": 1, "errors": "[]"}
        app.ctx.monitoring.record("licensing", tags={"license_status": "warning"}, fields=fields)
        assert await app.ctx.monitoring.flush()
        [point] = influx_db.query("SELECT * FROM licensing")
        assert (point["warnings"], point["errors"], "liveness_balance" in point) == (
            '["low"]',
            "[]",
            False,
        )
        assert app.ctx.monitoring.stats["fields_dropped"] == 2

    async def test_hooks_are_a_subclass_of_the_apps_request_class(self, serve_app, influx_db):
        """No Sanic middleware: the app's own request class is extended, and still used."""
        Sanic.test_mode = True

        class AppRequest(Request):
            __slots__ = ()

            def tenant(self) -> str:
                return self.headers.get("x-tenant", "none")

        app = Sanic(unique_name("ext"), request_class=AppRequest)
        try:
            app.config.MONITORING = influx_config(influx_db)
            app.extend(extensions=[MonitoringExtension], built_in_extensions=False)

            @app.get("/")
            async def hello(request):
                return text(f"{type(request).__name__} {request.tenant()}")

            async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
                response = await client.get("/", headers={"x-tenant": "t1"})
            assert not app.request_middleware and not app.response_middleware
            assert issubclass(app.request_class, AppRequest)
            assert response.text == "MonitoredAppRequest t1"
            assert is_request_id(response.headers[HEADER])
            assert await app.ctx.monitoring.flush()
            assert influx_db.count("requests") == 1
        finally:
            Sanic._app_registry.pop(app.name, None)

    async def test_switched_off_adds_no_hook_and_no_task(self, new_app, serve_app, influx_db):
        app = new_app()
        app.config.MONITORING = influx_config(influx_db, send_data_for_monitoring=False)
        app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            response = await client.get("/")
        assert response.text == "hello" and HEADER not in response.headers
        assert app.ctx.monitoring is None
        assert not app.request_middleware and not app.response_middleware
        assert app.request_class is Request
        assert not [t for t in asyncio.all_tasks() if "luna_monitoring" in t.get_name()]
        assert influx_db.query("SHOW MEASUREMENTS") == []

    @pytest.mark.parametrize(
        ("name", "offset"),
        [
            (None, 0),
            ("", 0),
            ("Sanic-Server-0-0", 0),
            ("Sanic-Server-3-1", 3),
            ("Sanic-Server-1025-0", 1),
        ],
    )
    def test_worker_clock_residue_comes_from_the_server_number(self, name, offset, monkeypatch):
        monkeypatch.delenv("SANIC_WORKER_NAME", raising=False)
        clock = worker_clock(name)
        stamps = [clock.now_ns() for _ in range(1000)]
        assert {stamp % WORKER_STRIDE for stamp in stamps} == {offset}
        assert stamps == sorted(set(stamps))

    def test_worker_clock_reads_the_sanic_worker_name(self, monkeypatch):
        monkeypatch.setenv("SANIC_WORKER_NAME", "Sanic-Server-5-0")
        assert worker_clock().now_ns() % WORKER_STRIDE == 5

    def test_worker_clock_adds_the_instance_offset_modulo_the_stride(self):
        assert worker_clock("Sanic-Server-3-0", offset=1022).now_ns() % WORKER_STRIDE == 1


class TestInstanceOffset:
    """Instances (hosts, containers) of one service get different timestamp residues."""

    def test_configured_offset_is_used_as_is(self, monkeypatch):
        monkeypatch.delenv(INSTANCE_OFFSET_ENV, raising=False)
        assert instance_offset(17) == 17
        assert INSTANCE_OFFSET_ENV not in os.environ

    def test_drawn_once_per_process_and_kept(self, monkeypatch):
        monkeypatch.setenv(INSTANCE_OFFSET_ENV, "")  # restored after the test
        first = instance_offset()
        assert 0 <= first < WORKER_STRIDE
        assert os.environ[INSTANCE_OFFSET_ENV] == f"{first}:{os.getpid()}"
        assert [instance_offset() for _ in range(5)] == [first] * 5

    def test_a_spawned_worker_inherits_its_parents_offset(self, monkeypatch):
        """A server worker uses the offset its main process drew."""
        monkeypatch.setenv(INSTANCE_OFFSET_ENV, f"700:{os.getppid()}")
        assert instance_offset(spawned_worker=True) == 700

    @pytest.mark.parametrize(
        ("drawn_by", "spawned"), [("1", True), ("parent", False)], ids=["other", "launcher"]
    )
    def test_another_processs_offset_is_not_inherited(self, monkeypatch, drawn_by, spawned):
        """An offset left by another process (the launcher of a single-process app, a test
        runner, another instance) is replaced by a new draw."""
        pid = os.getppid() if drawn_by == "parent" else 1
        monkeypatch.setenv(INSTANCE_OFFSET_ENV, f"700:{pid}")
        drawn = [instance_offset(spawned_worker=spawned) for _ in range(3)]
        assert os.environ[INSTANCE_OFFSET_ENV] == f"{drawn[0]}:{os.getpid()}"
        assert drawn == [drawn[0]] * 3

    def test_draws_are_uniform_over_the_residues(self, monkeypatch):
        """Each of 1024 residues equally likely: two instances share one with p = 1/1024."""
        monkeypatch.setenv(INSTANCE_OFFSET_ENV, "")  # restored after the test
        draws = collections.Counter(draw_instance_offset() for _ in range(20_000))
        assert set(draws) <= set(range(WORKER_STRIDE)) and len(draws) > 1000
        assert max(draws.values()) < 60  # expected 19.5 each


_SANIC_MANAGER_RACE = "TypeError: 'NoneType' object is not a mapping"
"""Sanic 25.12's main process, on a signal that arrives while it syncs its workers' states,
sometimes fails with this (in ``sanic/worker/process.py``) after the workers stopped; the
workers' graceful stop, which these tests check, has run by then."""


class TestWorkers:
    @pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
    def test_every_worker_monitors_and_a_graceful_stop_loses_nothing(
        self, tmp_path, influx_db, stop_signal
    ):
        config = influx_config(influx_db, flushing_period=5.0, excluded_routes=["^GET:/workers$"])
        service = _start_service(tmp_path, config, workers=2)
        try:
            served = service.requests_until_both_workers_served(least=200, most=1000)
        finally:
            service.proc.send_signal(stop_signal)
            code = service.wait(60)
            assert code == 0 or _SANIC_MANAGER_RACE in service.log(), service.log()
        points = influx_db.query('SELECT * FROM "requests"')
        assert len(points) == len(served)
        assert {p["request_id"]: p["route"] for p in points} == {rid: "GET:/pid" for rid in served}
        residues = {}
        for point in points:
            residues.setdefault(served[point["request_id"]], set()).add(
                point["time"] % WORKER_STRIDE
            )
        assert len(residues) == 2
        [first], [second] = residues.values()
        # The instance's drawn offset plus the server numbers 0 and 1: adjacent residues.
        assert (second - first) % WORKER_STRIDE in (1, WORKER_STRIDE - 1)

    @pytest.mark.skipif(
        int(sanic.__version__.split(".")[0]) < 25,
        reason="Sanic 24.12's workers did not complete on a process-group SIGINT within 60 s "
        "here; the double stop this checks is Sanic 25's",
    )
    def test_ctrl_c_logs_each_workers_start_and_loss_once(self, tmp_path):
        """Ctrl-C (SIGINT to the whole process group) with points that cannot be delivered:
        each worker logs where its points go once at start and its loss exactly once.

        The loss was logged twice by one worker in about half of the runs: the worker gets
        the SIGINT and then the main process's stop request, and runs its stop listeners
        twice. Sanic 25.12's main process sometimes hangs after both workers completed; it
        is then killed (no point depends on it).
        """
        with socket.create_server(("127.0.0.1", 0)) as black_hole:  # accepts, never answers
            target = f"InfluxDB v1 at http://127.0.0.1:{black_hole.getsockname()[1]}"
            config = {
                "version": 1,
                "port": black_hole.getsockname()[1],
                "flushing_period": 60,
                "write_timeout_s": 0.5,
                "shutdown_timeout_s": 1,
                "excluded_routes": ["^GET:/workers$"],
            }
            service = _start_service(tmp_path, config, workers=2, log_level="INFO")
            try:
                served = service.requests_until_both_workers_served(least=20, most=1000)
                os.killpg(service.proc.pid, signal.SIGINT)
                wait_until(lambda: service.log().count("Worker complete [") >= 2, timeout=60)
            finally:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    service.wait(10)
        log = service.log()
        label = r"\[(Sanic-Server-[01]-0) pid (\d+)\]"
        starts = re.findall(
            rf"INFO monitoring: points go to {re.escape(target)}, database 'luna_monitoring' "
            rf"every flushing_period=60 s in batches of at most batch_size=5000, holding at most "
            rf"max_buffer_points=100000, gzip off {label}",
            log,
        )
        assert sorted(worker for worker, _ in starts) == ["Sanic-Server-0-0", "Sanic-Server-1-0"]
        losses = re.findall(
            rf"WARNING monitoring: (\d+) points could not be delivered to {re.escape(target)}, "
            rf"database 'luna_monitoring' within shutdown_timeout_s=1 {label}",
            log,
        )
        assert sorted(worker for _, worker, _ in losses) == [w for w, _ in sorted(starts)]
        per_pid = collections.Counter(served.values())
        assert {pid: int(n) for n, _, pid in losses} == per_pid


class _Service:
    """``tests/apps/requests_app.py`` in a subprocess; its output goes to a log file."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def requests_until_both_workers_served(self, least: int, most: int) -> dict[str, str]:
        """``{request_id: pid}`` of GET /pid, each on a new connection, sent once both
        workers are up, at least ``least`` of them and until both workers answered.

        Waiting for the manager's ACKED avoids a Sanic 25.12 race: a stop signal that the
        main process gets before it has seen every worker's ack hangs it. It polls the acks
        every 0.1 s, less than the time ``least`` requests take.
        """
        wait_until(self._both_workers_up, timeout=60, ignore=(OSError,))
        served: dict[str, str] = {}
        while len(served) < least or len(set(served.values())) < 2:
            assert len(served) < most, f"one worker answered all of {most} requests"
            response = http_request("GET", f"{self.url}/pid", timeout=30)
            assert response.status == 200 and is_request_id(response.headers[HEADER])
            served[response.headers[HEADER]] = response.body.decode()
        return served

    def _both_workers_up(self) -> bool:
        assert self.proc.poll() is None, self.log()
        states = http_request("GET", f"{self.url}/workers", timeout=30).json()
        return list(states.values()) == ["ACKED", "ACKED"]


def _start_service(
    tmp_path: Path, monitoring: dict, workers: int, log_level: str = "", wrong_order: bool = False
) -> _Service:
    port = free_port()
    log_path = tmp_path / "service.log"
    env = {
        **os.environ,
        "APP_MONITORING": json.dumps(monitoring),
        "APP_PORT": str(port),
        "APP_WORKERS": str(workers),
        "APP_LOG_LEVEL": log_level,
        "APP_WRONG_ORDER": "1" if wrong_order else "",
    }
    return _Service(spawn_app(APP, env, tmp_path, log_path), port, log_path)


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class TestDecoratorOrder:
    """``@monitored_estimation`` above the route decorator would record nothing, silently."""

    async def test_wrong_order_fails_the_start_showing_the_right_one(
        self, new_app, serve_app, influx_db
    ):
        """The route kept the bare handler: the server refuses to start, in one line."""
        app = new_app()
        app.config.MONITORING = influx_config(influx_db)
        app.extend(extensions=[MonitoringExtension], built_in_extensions=False)

        @monitored_estimation
        @app.post("/sdk")
        async def sdk(request):
            return text("ok")

        with pytest.raises(MonitoringConfigError) as info:
            await serve_app(app)
        assert str(info.value) == (
            "monitoring: @monitored_estimation is above @app.post(...) on 'sdk' (/sdk), so the "
            "route runs the bare handler and records nothing; put it below: @app.post(...), "
            "then @monitored_estimation, then def sdk"
        )

    @pytest.mark.parametrize("workers", [1, 2])
    def test_wrong_order_stops_a_service_at_once_with_the_message(self, tmp_path, workers):
        """``app.run(workers=N)``: the main process refuses (a failing worker would hang it)."""
        service = _start_service(tmp_path, {"version": 1}, workers, wrong_order=True)
        assert service.wait(30) == 1
        assert "MonitoringConfigError: monitoring: @monitored_estimation is above @app.post" in (
            service.log()
        )

    async def test_blueprint_route_in_the_wrong_order_is_found(self, new_app, serve_app, influx_db):
        app = new_app()
        app.config.MONITORING = influx_config(influx_db)
        app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
        bp = Blueprint(unique_name("bp"), url_prefix="/v1")

        @monitored_estimation
        @bp.post("/iso")
        async def iso(request):
            return text("ok")

        app.blueprint(bp)
        with pytest.raises(MonitoringConfigError, match=r"on 'iso' \(/v1/iso\)"):
            await serve_app(app)

    async def test_right_order_and_reuse_of_a_bare_handler_start(
        self, influx_db, new_app, serve_app
    ):
        """Below the route decorator, or the bare function also on another route: fine."""
        app = new_app()
        app.config.MONITORING = influx_config(influx_db)
        app.extend(extensions=[MonitoringExtension], built_in_extensions=False)

        @app.post("/sdk")
        @monitored_estimation
        def sdk(request):
            return text("ok")

        async def iso(request):
            return text("iso")

        app.add_route(iso, "/iso/plain", methods=["POST"], name="iso_plain")
        app.add_route(monitored_estimation(iso), "/iso", methods=["POST"])
        url = await serve_app(app)
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{url}/iso")).text == "iso"


CACHE_SERIES = {
    "cache_lookup": {
        "description": "one cache lookup",
        "tags": ["cache"],
        "fields": {"hits": "int", "latency": "float", "key": "str"},
    }
}


class TestCustomSeries:
    """A series of the service's own, declared in ``custom_series``, written by ``record``."""

    @pytest.fixture
    def cache_app(self, new_app, serve_app, influx_db):
        """``await cache_app()`` -> a served app declaring ``cache_lookup``."""

        async def make():
            app = new_app()
            app.config.MONITORING = influx_config(influx_db, custom_series=CACHE_SERIES)
            app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
            await serve_app(app)
            return app

        return make

    async def test_recorded_typed_in_influxdb_given_to_plugins_ignored_by_prometheus(
        self, new_app, serve_app, influx_db
    ):
        app = new_app()
        app.config.MONITORING = influx_config(
            influx_db, custom_series=CACHE_SERIES, prometheus={"enabled": True}
        )
        app.extend(extensions=[MonitoringExtension(plugins=[Recorder])])
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            monitoring = app.ctx.monitoring
            monitoring.record(
                "cache_lookup",
                tags={"cache": 'faces "L1",\nß'},
                fields={"hits": 3, "latency": 2, "key": "k\\1"},
            )
            assert await monitoring.flush()
            metrics = await client.get("/metrics")
        assert influx_db.query('SELECT * FROM "cache_lookup"') == [
            {
                "time": influx_db.query('SELECT * FROM "cache_lookup"')[0]["time"],
                "cache": 'faces "L1",\\nß',
                "hits": 3,
                "key": "k\\1",
                "latency": 2.0,
                "service": "luna-remote-sdk",
            }
        ]
        types = influx_db.query('SHOW FIELD KEYS FROM "cache_lookup"')
        assert {row["fieldKey"]: row["fieldType"] for row in types} == {
            "hits": "integer",
            "key": "string",
            "latency": "float",
        }
        [plugin] = app.ctx.monitoring_plugins.plugins
        await _until(lambda: [p.series for p in plugin.points] == ["cache_lookup"])
        assert metrics.status_code == 200 and "cache_lookup" not in metrics.text
        assert monitoring.stats["sink_errors"] == 0

    @pytest.mark.parametrize(
        ("tags", "fields", "message"),
        [
            ({}, {"hits": 1}, "cache_lookup: missing required tag(s) cache; required: cache"),
            (
                {"cache": "a", "zone": "b"},
                {"hits": 1},
                "cache_lookup: unknown tag 'zone'; valid tags: cache",
            ),
        ],
    )
    async def test_validated_like_the_built_in_series(self, cache_app, tags, fields, message):
        app = await cache_app()
        with pytest.raises(ValueError) as info:
            app.ctx.monitoring.record("cache_lookup", tags=tags, fields=fields)
        assert str(info.value) == message

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"hit": 1}, "cache_lookup: unknown field 'hit'; valid fields: hits, latency, key"),
            ({"hits": 1.5}, "cache_lookup: field 'hits' must be int, got float 1.5"),
        ],
    )
    async def test_a_field_it_cannot_take_is_left_out_and_counted(
        self, cache_app, influx_db, fields, reason, caplog
    ):
        """As for built-in series, ``record()`` never raises over a field value."""
        monitoring = (await cache_app()).ctx.monitoring
        monitoring.record("cache_lookup", tags={"cache": "a"}, fields={**fields, "latency": 1})
        assert await monitoring.flush()
        [point] = influx_db.query('SELECT * FROM "cache_lookup"')
        assert (point["latency"], point.get("hits")) == (1.0, None)
        assert monitoring.stats["fields_dropped"] == 1
        [warning] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
        assert f"the last: {reason} [" in warning

    async def test_unknown_series_names_the_custom_ones_too(self, cache_app):
        app = await cache_app()
        with pytest.raises(ValueError, match=r"; custom_series: cache_lookup$"):
            app.ctx.monitoring.record("my_series", fields={"x": 1})
