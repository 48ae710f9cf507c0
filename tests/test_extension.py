"""MonitoringExtension: wiring, config errors, the per-worker runtime, ``app.run(workers=N)``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sanic import Request, Sanic
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
)
from luna_monitoring.core.request_id import is_request_id
from luna_monitoring.core.runtime import WORKER_STRIDE, Monitoring, worker_clock

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
            assert service.wait(60) == 0, service.log()
        points = influx_db.query('SELECT * FROM "requests"')
        assert len(points) == len(served)
        assert {p["request_id"]: p["route"] for p in points} == {rid: "GET:/pid" for rid in served}
        residues = {}
        for point in points:
            residues.setdefault(served[point["request_id"]], set()).add(
                point["time"] % WORKER_STRIDE
            )
        assert len(residues) == 2
        assert sorted(tuple(values) for values in residues.values()) == [(0,), (1,)]


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


def _start_service(tmp_path: Path, monitoring: dict, workers: int) -> _Service:
    port = free_port()
    log_path = tmp_path / "service.log"
    env = {
        **os.environ,
        "APP_MONITORING": json.dumps(monitoring),
        "APP_PORT": str(port),
        "APP_WORKERS": str(workers),
    }
    return _Service(spawn_app(APP, env, tmp_path, log_path), port, log_path)


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
