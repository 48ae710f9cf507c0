"""The aiohttp adapter: wiring, the runtime object, plugins, Prometheus, several processes
(``web.run_app``, gunicorn's ``aiohttp.GunicornWebWorker``), and the same points as Sanic.

The request, error, estimation and licensing suites (test_request_hooks, test_collector,
test_licensing) run on both frameworks through the ``framework`` fixture; this module holds
what is aiohttp's own and the comparison of the two.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from apps.equivalent import aiohttp_app, monitoring_of, sanic_app
from sanic import Sanic
from servers import free_port, http_request, unique_name, wait_until
from test_extension import Recorder, _Service, _until, influx_config

from luna_monitoring import MonitoringConfigError
from luna_monitoring.aiohttp import (
    MONITORING,
    AppMonitoring,
    get_monitoring,
    request_hooks,
    setup_monitoring,
)
from luna_monitoring.core.request_id import is_request_id
from luna_monitoring.core.runtime import WORKER_STRIDE, Monitoring

APPS = Path(__file__).parent / "apps"
HEADER = "LUNA-Request-Id"
GIVEN_ID = "1700000000,6a5c2191-3e9b-f5a4-fa2b-c7bb3a6d2ad4"


async def _started(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` served on 127.0.0.1 (stopped by the caller's ``runner.cleanup()``)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


class TestSetup:
    @pytest.mark.parametrize(
        ("config", "named"),
        [
            ({"version": 3}, "version"),
            ({"version": 1, "flushing_period": -1}, "flushing_period"),
            ({"version": 1, "plugins": ["no.such.module:Plugin"]}, "no.such.module"),
        ],
    )
    def test_bad_config_fails_at_setup_naming_the_key(self, config, named):
        with pytest.raises(MonitoringConfigError, match=named):
            setup_monitoring(web.Application(), config)

    def test_a_second_setup_of_the_same_app_is_refused(self, influx_db):
        app = web.Application()
        setup_monitoring(app, influx_config(influx_db))
        with pytest.raises(MonitoringConfigError, match="monitored already"):
            setup_monitoring(app, influx_config(influx_db))
        assert len(app.cleanup_ctx) == 1

    def test_compiled_hook_reads_behind_the_properties_only_where_aiohttp_keeps_them(
        self, monkeypatch
    ):
        assert request_hooks._compiled_reads() == {
            "route_attrs": ("_match_info", "_route", "_resource"),
            "response_attrs": ("_status", "_headers"),
        }

        class RouteElsewhere(UrlMappingMatchInfo):  # an aiohttp keeping it under another name
            __slots__ = ("_elsewhere",)

            def __init__(self, match_dict, route):
                super().__init__(match_dict, route)
                self._elsewhere, self._route = route, None

            route = property(lambda self: self._elsewhere)

        monkeypatch.setattr(request_hooks, "UrlMappingMatchInfo", RouteElsewhere)
        assert request_hooks._compiled_reads() == {
            "route_attrs": ("_match_info", "route", "resource")
        }

    def test_setup_stores_typed_state_and_adds_one_cleanup_context(self, influx_db):
        app = web.Application()
        before = len(app.cleanup_ctx)
        state = setup_monitoring(app, influx_config(influx_db), plugins=[Recorder])
        assert app[MONITORING] is state and isinstance(state, AppMonitoring)
        assert state.plugin_classes == (Recorder,)
        assert len(app.cleanup_ctx) == before + 1
        assert get_monitoring(app) is None  # made per worker, at startup
        assert not app.middlewares

    async def test_switched_off_changes_nothing_but_the_state(self, influx_db, serve_any):
        app = aiohttp_app(influx_config(influx_db, send_data_for_monitoring=False))
        async with httpx.AsyncClient(base_url=await serve_any(app)) as client:
            response = await client.get("/health")
        assert response.json() == "ok" and HEADER not in response.headers
        assert get_monitoring(app) is None and app[MONITORING].hooks is None
        assert "_make_request" not in vars(app)
        assert not [t for t in asyncio.all_tasks() if "luna_monitoring" in t.get_name()]
        assert influx_db.query("SHOW MEASUREMENTS") == []


class TestRuntime:
    async def test_the_worker_runtime_records_flushes_counts_and_feeds_plugins(
        self, influx_db, serve_any
    ):
        app = aiohttp_app(influx_config(influx_db), plugins=(Recorder,))
        async with httpx.AsyncClient(base_url=await serve_any(app)) as client:
            response = await client.get("/health")
        monitoring = get_monitoring(app)
        assert isinstance(monitoring, Monitoring) and monitoring is app[MONITORING].runtime
        monitoring.record(
            "licensing", tags={"license_status": "warning"}, fields={"liveness_balance": 3}
        )
        assert await monitoring.flush()
        assert influx_db.count("requests") == influx_db.count("licensing") == 1
        assert monitoring.stats["points_written"] == 2
        assert {"points_buffered", "points_dropped", "plugin_points_delivered"} <= set(
            monitoring.stats
        )
        [plugin] = app[MONITORING].plugins.plugins
        assert plugin.app is app
        await _until(lambda: len(plugin.points) == 2)
        assert plugin.points[0].fields["request_id"] == response.headers[HEADER]

    async def test_cleanup_writes_what_is_buffered(self, influx_db):
        app = aiohttp_app(influx_config(influx_db, flushing_period=60.0))
        runner, base = await _started(app)
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(20):
                await client.post("/sdk_estimate")
        assert influx_db.count("requests") == 0  # nothing written before the stop
        await runner.cleanup()
        assert influx_db.count("requests") == 20
        assert influx_db.count("sdkloop_task") == influx_db.count("face_detection") == 20

    async def test_cleanup_with_the_database_gone_ends_within_the_shutdown_timeout(self, influx_db):
        config = influx_config(influx_db, port=free_port(), shutdown_timeout_s=1.0)
        app = aiohttp_app({**config, "flushing_period": 60.0})
        runner, base = await _started(app)
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(5):
                assert (await client.get("/health")).status_code == 200
        loop = asyncio.get_running_loop()
        began = loop.time()
        await runner.cleanup()
        assert loop.time() - began < 1.0 + 2.0
        assert get_monitoring(app).stats["points_written"] == 0


class TestPrometheus:
    async def test_metrics_route_serves_the_request_counts_and_emits_no_point(
        self, influx_db, serve_any
    ):
        app = aiohttp_app(influx_config(influx_db, prometheus={"enabled": True}))
        async with httpx.AsyncClient(base_url=await serve_any(app)) as client:
            for _ in range(3):
                await client.get("/handlers/x")
            await client.get("/crash")
            monitoring = get_monitoring(app)
            assert await monitoring.flush()

            async def exposition() -> str:
                return (await client.get("/metrics")).text

            deadline = asyncio.get_running_loop().time() + 10
            while 'route="GET:/handlers/{handler_id}",service' not in (text := await exposition()):
                assert asyncio.get_running_loop().time() < deadline, text
                await asyncio.sleep(0.05)
            response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = response.text.splitlines()
        assert (
            'request_count_total{route="GET:/handlers/{handler_id}",'
            'service="luna-remote-sdk",status_code="200"} 3.0'
        ) in lines
        assert any(line.startswith('errors_count_total{error_code="0"') for line in lines)
        assert "GET:/metrics" not in response.text
        assert await monitoring.flush()
        routes = {p["route"] for p in influx_db.query('SELECT * FROM "requests"')}
        assert routes == {"GET:/handlers/{handler_id}", "GET:/crash"}


# ------------------------------------------------------------------ the same points


TRAFFIC = [
    ("GET", "/handlers/abc", {}),
    ("GET", "/handlers/1", {HEADER: GIVEN_ID}),
    ("GET", "/handlers/2", {HEADER: 'not-an-id "quoted" \\ back'}),
    ("HEAD", "/handlers/abc", {}),
    ("DELETE", "/handlers/abc", {}),
    ("POST", "/no/such/path", {}),
    ("GET", "/handlers/%C3%A9%22%5C%0A%20x", {}),  # é " \ line break: the template only
    ("GET", "/caf%C3%A9/%22q%22/%0A", {}),  # unmatched: no path text in any tag
    ("GET", "/crash", {}),
    ("GET", "/luna_error", {}),
    ("GET", "/json_error?code=7", {}),
    ("GET", "/json_error?code=seven", {}),
    ("GET", "/text_error", {}),
    ("GET", "/stream", {}),
    ("POST", "/sdk", {}),
    ("POST", "/sdk_estimate", {}),
    ("POST", "/views/42", {}),
    ("POST", "/sdk_fail", {}),
    ("POST", "/undecorated", {}),
    ("POST", "/license", {}),
]
_TIMINGS = {"execution_time"}


def _comparable(points: list[dict], service: str) -> list[tuple]:
    """Points without what differs from run to run: times, durations, made request ids;
    the routes spelled Sanic's way."""
    rows = []
    for point in points:
        row = {}
        for key, value in point.items():
            if key in ("time", "service") or key in _TIMINGS or value is None:
                continue
            if key == "request_id":
                value = value if value == GIVEN_ID or not is_request_id(value) else "<made>"
            if key == "route":
                value = value.replace("{", "<").replace("}", ">")
            row[key] = value
        assert point["service"] == service
        rows.append(tuple(sorted(row.items())))
    return sorted(rows, key=repr)


async def test_the_same_traffic_makes_the_same_points_on_both(influx_db, serve_any):
    """Every request of TRAFFIC, sent to the Sanic and the aiohttp app, makes the same points
    (measurements, tags, field names, types and values) apart from route parameter spelling."""
    Sanic.test_mode = True
    sanic = sanic_app(unique_name("same"), influx_config(influx_db, service="on-sanic"))
    aiohttp = aiohttp_app(influx_config(influx_db, service="on-aiohttp"))
    try:
        for app in (sanic, aiohttp):
            async with httpx.AsyncClient(base_url=await serve_any(app), timeout=10) as client:
                for method, path, headers in TRAFFIC:
                    response = await client.request(method, path, headers=headers)
                    assert is_request_id(response.headers[HEADER]), (method, path)
            assert await monitoring_of(app).flush()
    finally:
        Sanic._app_registry.pop(sanic.name, None)
    measurements = {row["name"] for row in influx_db.query("SHOW MEASUREMENTS")}
    assert {"requests", "errors", "sdkloop_task", "image_load", "licensing"} <= measurements
    for measurement in sorted(measurements):
        by_service = {"on-sanic": [], "on-aiohttp": []}
        for point in influx_db.query(f'SELECT * FROM "{measurement}"'):
            by_service[point["service"]].append(point)
        assert by_service["on-sanic"], measurement
        assert _comparable(by_service["on-sanic"], "on-sanic") == _comparable(
            by_service["on-aiohttp"], "on-aiohttp"
        ), measurement
    requests = influx_db.query('SELECT * FROM "requests" WHERE "service" = \'on-aiohttp\'')
    assert len(requests) == len(TRAFFIC)
    assert {p["route"] for p in requests} == {
        *(f"{m}:/handlers/{{handler_id}}" for m in ("GET", "HEAD", "DELETE")),
        "GET:__unmatched__",
        "POST:__unmatched__",
        *(f"GET:/{name}" for name in ("crash", "luna_error", "json_error", "text_error")),
        "GET:/stream",
        *(f"POST:/{name}" for name in ("sdk", "sdk_estimate", "sdk_fail", "undecorated")),
        "POST:/license",
        "POST:/views/{item_id}",
    }
    types = influx_db.query('SHOW FIELD KEYS FROM "requests"')
    assert {r["fieldKey"]: r["fieldType"] for r in types}["execution_time"] == "float"


# ------------------------------------------------------------------ several processes


class _Process(_Service):
    """A service in a subprocess of its own session; output in a log file."""

    def __init__(self, args: list[str], env: dict, log_path: Path, port: int) -> None:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=APPS,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        super().__init__(proc, port, log_path)

    def stop(self, sig: int, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def up(self) -> bool:
        assert self.proc.poll() is None, self.log()
        return http_request("GET", f"{self.url}/health", timeout=10).status == 200

    def served_by_pid(self, least: int, most: int, workers: int) -> dict[str, str]:
        """``{request_id: pid}`` of GET /pid on new connections: ``least`` of them, more
        until ``workers`` different pids answered (at most ``most``)."""
        wait_until(self.up, timeout=60, ignore=(OSError,))
        served: dict[str, str] = {}
        while len(served) < least or len(set(served.values())) < workers:
            assert len(served) < most, f"fewer than {workers} workers answered {most} requests"
            response = http_request("GET", f"{self.url}/pid", timeout=30)
            assert response.status == 200 and is_request_id(response.headers[HEADER])
            served[response.headers[HEADER]] = response.body.decode()
        return served


def _env(config: dict, port: int, **more: str) -> dict:
    """The environment of a service: ``config``, its ``/health`` probes not monitored."""
    return {
        **os.environ,
        "APP_MONITORING": json.dumps({**config, "excluded_routes": ["^GET:/health$"]}),
        "APP_PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(APPS.parent.parent), str(APPS)]),
        **more,
    }


def _gunicorn(tmp_path: Path, config: dict, workers: int, **env: str) -> _Process:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "equivalent:gunicorn_app",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "aiohttp.GunicornWebWorker",
        "--workers",
        str(workers),
        "--graceful-timeout",
        "30",
    ]
    return _Process(args, _env(config, port, **env), tmp_path / "gunicorn.log", port)


def _residues_by_pid(points: list[dict], served: dict[str, str]) -> dict[str, set[int]]:
    residues: dict[str, set[int]] = {}
    for point in points:
        residues.setdefault(served[point["request_id"]], set()).add(point["time"] % WORKER_STRIDE)
    return residues


class TestProcesses:
    def test_gunicorn_workers_each_monitor_with_their_own_clock_and_lose_nothing(
        self, tmp_path, influx_db
    ):
        """2 gunicorn workers: every request stored once at a graceful stop (the flushing
        period is longer than the run), each worker's timestamps its own residue."""
        service = _gunicorn(tmp_path, influx_config(influx_db, flushing_period=30.0), 2)
        try:
            served = service.served_by_pid(least=200, most=2000, workers=2)
            assert influx_db.count("requests") == 0
        finally:
            code = service.stop(signal.SIGTERM)
        assert code == 0, service.log()
        points = influx_db.query('SELECT * FROM "requests"')
        assert {p["request_id"]: p["route"] for p in points} == {rid: "GET:/pid" for rid in served}
        residues = _residues_by_pid(points, served)
        assert len(residues) == 2
        assert all(len(values) == 1 for values in residues.values())
        assert len(set.union(*residues.values())) == 2

    def test_gunicorn_prometheus_sums_both_workers(self, tmp_path, influx_db):
        config = influx_config(influx_db, prometheus={"enabled": True})
        metrics_dir = tmp_path / "prometheus"
        metrics_dir.mkdir()
        service = _gunicorn(tmp_path, config, 2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        try:
            served = service.served_by_pid(least=50, most=2000, workers=2)
            key = (
                'request_count_total{route="GET:/pid",service="luna-remote-sdk",status_code="200"}'
            )

            def summed() -> float:
                text = http_request("GET", f"{service.url}/metrics").body.decode()
                return next(
                    (float(line.split()[-1]) for line in text.splitlines() if line.startswith(key)),
                    0.0,
                )

            wait_until(lambda: summed() == len(served), timeout=30)
        finally:
            assert service.stop(signal.SIGTERM) == 0, service.log()

    def test_run_app_stops_gracefully_on_sigint_with_everything_written(self, tmp_path, influx_db):
        config = influx_config(influx_db, flushing_period=30.0)
        port = free_port()
        args = [sys.executable, str(APPS / "equivalent.py"), "aiohttp"]
        service = _Process(args, _env(config, port), tmp_path / "run_app.log", port)
        try:
            served = service.served_by_pid(least=50, most=50, workers=1)
            for _ in range(10):
                http_request("POST", f"{service.url}/sdk_estimate", body=b"")
        finally:
            code = service.stop(signal.SIGINT)
        assert code == 0, service.log()
        points = influx_db.query('SELECT * FROM "requests"')
        assert len(points) == len(served) + 10
        assert influx_db.count("sdkloop_task") == 10
