"""Prometheus: exact exposition, workers summed, endpoint not monitored, real scrapes."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic
from sanic.exceptions import SanicException
from sanic.response import text
from servers import (
    HttpResponse,
    InfluxDatabase,
    free_port,
    http_request,
    spawn_app,
    wait_until,
)

from example_app.demo import (
    DATABASE,
    counts,
    plan,
    ready,
    send,
    start_service,
    stop_service,
    wait_for,
)
from example_app.influxd import InfluxD
from luna_monitoring.core.metric_families import DURATION_BUCKETS_S, count_range
from luna_monitoring.core.point import Point
from luna_monitoring.core.point_metrics import PointMetrics
from luna_monitoring.core.prometheus import CONTENT_TYPE, ENV
from luna_monitoring.core.schema import ESTIMATOR_SERIES

SERVICE = "luna-remote-sdk"
APP = Path(__file__).parent / "apps" / "metrics_app.py"


def request(route: str, status: str, seconds: float) -> Point:
    tags = {"service": SERVICE, "route": route, "status_code": status}
    return Point("requests", 1, tags, {"request_id": "r", "execution_time": seconds})


def error(route: str, status: str, code: str) -> Point:
    tags = {"service": SERVICE, "route": route, "status_code": status, "error_code": code}
    return Point("errors", 1, tags, {"request_id": "r"})


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of every sample line of an exposition."""
    lines = (line.rpartition(" ") for line in text.splitlines() if not line.startswith("#"))
    return {series: float(value) for series, _, value in lines if series}


class MetricsApp:
    """``tests/apps/metrics_app.py`` under ``app.run(workers=N)`` in a subprocess group."""

    def __init__(
        self, tmp_path: Path, workers: int, env: dict[str, str] | None = None, **monitoring: Any
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.events_path = tmp_path / "events.txt"
        self.log_path = tmp_path / "app.log"
        self.workers = workers
        env = {
            **os.environ,
            "APP_MONITORING": json.dumps({"excluded_routes": ["^GET:/stop$"], **monitoring}),
            "APP_PORT": str(self.port),
            "APP_WORKERS": str(workers),
            "APP_EVENTS": str(self.events_path),
            "PYTHONPATH": str(APP.parents[2]),  # example_app
            **(env or {}),
        }
        env.pop(ENV, None)
        self.proc = spawn_app(APP, env, tmp_path, self.log_path)

    def __enter__(self) -> MetricsApp:
        try:
            wait_until(self._ready, timeout=60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
        return sum(e.endswith(" initialized") for e in self.events()) == self.workers

    def events(self) -> list[str]:
        """The lifecycle plugin's ``<pid> <event>`` lines so far."""
        return self.events_path.read_text().splitlines() if self.events_path.exists() else []

    def log(self) -> str:
        """Everything the service printed so far."""
        return self.log_path.read_text(errors="replace")

    def ping_until_every_worker_served(self, least: int, most: int) -> list[HttpResponse]:
        """GET /ping (a new connection each) at least ``least`` times and until every
        worker answered, at most ``most`` times."""
        responses: list[HttpResponse] = []
        while len(responses) < least or len({r.body for r in responses}) < self.workers:
            assert len(responses) < most, f"not every worker answered {most} requests"
            responses.append(http_request("GET", f"{self.url}/ping"))
            assert responses[-1].status == 200, responses[-1]
        return responses

    def stop(self, timeout: float = 30.0) -> int:
        """Shut the service down (``GET /stop``); its exit code."""
        assert http_request("GET", f"{self.url}/stop").status == 200
        return self.proc.wait(timeout)


class Rejected(SanicException):
    status_code = 400
    error_code = 12001


def routes(app: Sanic) -> Sanic:
    @app.get("/ok")
    async def ok(request):
        return text("ok")

    @app.get("/fail")
    async def fail(request):
        raise Rejected("no")

    return app


async def metrics_text(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    return response.text


class TestRequestFamilies:
    def test_counts_requests_errors_and_durations(self, tmp_path):
        metrics = PointMetrics(str(tmp_path), {})
        metrics.feed(
            [
                request("POST:/sdk", "200", 0.04),
                request("POST:/sdk", "200", 0.3),
                request("POST:/sdk", "400", 0.002),
                error("POST:/sdk", "400", "12001"),
                Point("sdkloop_task", 1, {"service": SERVICE}, {"execution_time": 0.1}),
            ]
        )
        got = samples(metrics.exposition().decode())
        labels = f'route="POST:/sdk",service="{SERVICE}"'
        assert got[f'request_count_total{{{labels},status_code="200"}}'] == 2
        assert got[f'request_count_total{{{labels},status_code="400"}}'] == 1
        assert got[f'errors_count_total{{error_code="12001",{labels},status_code="400"}}'] == 1
        assert got[f"request_duration_seconds_count{{{labels}}}"] == 3
        assert got[f"request_duration_seconds_sum{{{labels}}}"] == pytest.approx(0.342)
        buckets = {
            series: value
            for series, value in got.items()
            if "request_duration_seconds_bucket" in series
        }  # one per bound and +Inf, cumulative
        assert len(buckets) == len(DURATION_BUCKETS_S) + 1
        assert got[f'request_duration_seconds_bucket{{le="0.005",{labels}}}'] == 1
        assert got[f'request_duration_seconds_bucket{{le="0.025",{labels}}}'] == 1
        assert got[f'request_duration_seconds_bucket{{le="0.05",{labels}}}'] == 2
        assert got[f'request_duration_seconds_bucket{{le="0.25",{labels}}}'] == 2
        assert got[f'request_duration_seconds_bucket{{le="0.5",{labels}}}'] == 3
        assert got[f'request_duration_seconds_bucket{{le="+Inf",{labels}}}'] == 3
        metrics.close()

    def test_a_bound_is_inclusive(self, tmp_path):
        metrics = PointMetrics(str(tmp_path), {})
        metrics.feed([request("GET:/", "200", 0.1)])
        got = samples(metrics.exposition().decode())
        labels = f'route="GET:/",service="{SERVICE}"'
        assert got[f'request_duration_seconds_bucket{{le="0.075",{labels}}}'] == 0
        assert got[f'request_duration_seconds_bucket{{le="0.1",{labels}}}'] == 1
        metrics.close()

    @pytest.mark.parametrize("owns", [True, False])
    def test_close_removes_only_a_directory_it_owns(self, tmp_path, owns):
        metrics = PointMetrics(str(tmp_path), {}, owns_directory=owns)
        metrics.feed([request("GET:/", "200", 0.1)])
        metrics.close()
        assert tmp_path.exists() is not owns

    def test_extra_labels_on_every_series(self, tmp_path):
        metrics = PointMetrics(str(tmp_path), {"region": "eu", "node": "n1"})
        metrics.feed([request("GET:/", "500", 0.1), error("GET:/", "500", "0")])
        text = metrics.exposition().decode()
        lines = [line for line in text.splitlines() if not line.startswith("#")]
        assert len(lines) == 1 + 1 + 1 + len(DURATION_BUCKETS_S) + 1 + 2
        assert all('node="n1"' in line and 'region="eu"' in line for line in lines)
        metrics.close()

    def test_workers_are_summed(self, tmp_path):
        workers = [PointMetrics(str(tmp_path), {}) for _ in range(3)]
        for n, worker in enumerate(workers, start=1):
            worker.feed([request("GET:/", "200", 0.01)] * n)
        workers[0].close()  # a stopped worker's totals stay
        key = f'request_count_total{{route="GET:/",service="{SERVICE}",status_code="200"}}'
        for worker in workers:
            assert samples(worker.exposition().decode())[key] == 6
        for worker in workers[1:]:
            worker.close()


class TestEndpoint:
    async def test_exact_counts_labels_and_endpoint_not_monitored(
        self, make_app, serve_app, influx_db: InfluxDatabase
    ):
        app = routes(make_app(prometheus={"enabled": True, "extra_labels": {"region": "eu"}}))
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            for path in ["/ok"] * 3 + ["/fail"] * 2 + ["/metrics"] * 4:
                await client.get(path)
            await app.ctx.monitoring.flush()  # every point has passed the sinks
            lines = (await metrics_text(client)).splitlines()
        labels = f'region="eu",route="GET:/ok",service="{SERVICE}"'
        assert sorted(line for line in lines if line.startswith("request_count")) == [
            f'request_count_total{{region="eu",route="GET:/fail",service="{SERVICE}",'
            'status_code="400"} 2.0',
            f'request_count_total{{{labels},status_code="200"}} 3.0',
        ]
        assert [line for line in lines if line.startswith("errors_count")] == [
            f'errors_count_total{{error_code="12001",region="eu",route="GET:/fail",'
            f'service="{SERVICE}",status_code="400"}} 2.0'
        ]
        assert f"request_duration_seconds_count{{{labels}}} 3.0" in lines
        assert f'request_duration_seconds_bucket{{le="+Inf",{labels}}} 3.0' in lines
        assert not [line for line in lines if "GET:/metrics" in line]
        assert influx_db.count("requests") == 5
        assert influx_db.query("SELECT * FROM requests WHERE route = 'GET:/metrics'") == []

    async def test_unknown_paths_add_one_label_set(self, make_app, serve_app):
        app = make_app(prometheus={"enabled": True})
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            for start in range(0, 1000, 50):
                batch = [client.get(f"/unknown/{i}") for i in range(start, start + 50)]
                assert {r.status_code for r in await asyncio.gather(*batch)} == {404}
            await app.ctx.monitoring.flush()
            got = samples(await metrics_text(client))
        route = f'route="GET:__unmatched__",service="{SERVICE}"'
        assert {k: v for k, v in got.items() if "_count" in k} == {
            f'request_count_total{{{route},status_code="404"}}': 1000,
            f'errors_count_total{{error_code="0",{route},status_code="404"}}': 1000,
            f"request_duration_seconds_count{{{route}}}": 1000,
        }

    async def test_a_given_directory_is_used(self, make_app, serve_app, tmp_path, monkeypatch):
        monkeypatch.setenv(ENV, str(tmp_path))
        app = make_app(prometheus={"enabled": True})
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            await client.get("/nothing")
            await app.ctx.monitoring.flush()
            assert 'status_code="404"} 1.0' in await metrics_text(client)
        kinds = {path.name.partition("_")[0] for path in tmp_path.iterdir()}
        assert {"counter", "histogram"} <= kinds <= {"counter", "histogram", "gauge"}

    async def test_configured_buckets_are_served(self, make_app, serve_app):
        """``prometheus.buckets`` replaces a histogram's bounds; +Inf is added."""
        buckets = {"request_duration_seconds": [0.5, 60]}
        app = routes(make_app(prometheus={"enabled": True, "buckets": buckets}))
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            await client.get("/ok")
            await app.ctx.monitoring.flush()
            lines = (await metrics_text(client)).splitlines()
        labels = f'route="GET:/ok",service="{SERVICE}"'
        assert [line for line in lines if line.startswith("request_duration_seconds_b")] == [
            f'request_duration_seconds_bucket{{le="0.5",{labels}}} 1.0',
            f'request_duration_seconds_bucket{{le="60.0",{labels}}} 1.0',
            f'request_duration_seconds_bucket{{le="+Inf",{labels}}} 1.0',
        ]

    async def test_disabled_serves_no_endpoint(self, make_app, serve_app):
        app = make_app()
        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            assert (await client.get("/metrics")).status_code == 404


class TestWorkers:
    def test_two_workers_summed_and_scraped_by_prometheus(
        self, tmp_path, influx_db: InfluxDatabase, prometheus_factory
    ):
        monitoring = {
            "version": 1,
            "port": influx_db.server.port,
            "database": influx_db.name,
            "flushing_period": 0.1,
            "prometheus": {"enabled": True, "extra_labels": {"cluster": "c1"}},
        }
        with MetricsApp(tmp_path, workers=2, **monitoring) as app:
            prometheus = prometheus_factory(f"127.0.0.1:{app.port}")
            sent = len(app.ping_until_every_worker_served(least=40, most=400))
            line = (
                f'request_count_total{{cluster="c1",route="GET:/ping",service="{SERVICE}",'
                f'status_code="200"}} {float(sent)}'
            )

            def scrape() -> str:
                return http_request("GET", f"{app.url}/metrics").body.decode()

            wait_until(lambda: line in scrape())
            for _ in range(6):  # whichever worker answers, it shows the sum
                assert line in scrape()
            assert f"app_pings_total {float(sent)}" in scrape().splitlines()  # the app's own
            query = 'sum(request_count_total{route="GET:/ping",cluster="c1"})'
            result = wait_until(
                lambda: [r for r in prometheus.query(query) if r["value"][1] == str(sent)],
                timeout=30,
            )
            assert len(result) == 1
            assert prometheus.query('count(request_count_total{route="GET:/metrics"})') == []
            wait_until(lambda: influx_db.count("requests") == sent, timeout=10)
            directory = app.log().split("multiproc_dir=")[1].split()[0]
            assert os.path.isdir(directory)
            assert app.stop() == 0
        assert not os.path.exists(directory)
        assert influx_db.count("requests") == sent


class TestWorkerHealth:
    def test_two_workers_database_down_failing_plugins(self, tmp_path):
        """``workers=2``, nothing listening on the database port, a plugin that raises on
        every point and one that hangs on its first: every worker's counters, combined."""
        monitoring = {
            "version": 1,
            "port": free_port(),
            "flushing_period": 0.1,
            "max_buffer_points": 20,
            "max_retry_delay_s": 0.2,
            "plugin_timeout_s": 0.3,
            "plugins": ["faulty_plugins:RaisingPlugin", "faulty_plugins:HangingOncePlugin"],
            "prometheus": {"enabled": True},
        }
        with MetricsApp(tmp_path, workers=2, **monitoring) as app:
            sent = len(app.ping_until_every_worker_served(least=100, most=400))

            def health() -> dict[str, float]:
                text = http_request("GET", f"{app.url}/metrics").body.decode()
                got = samples(text)
                return {
                    key.split("{")[0] + key.partition("plugin=")[2].split(",")[0]: value
                    for key, value in got.items()
                    if key.startswith("monitoring_")
                }

            def settled() -> dict[str, float] | None:
                got = health()
                kept = got.get("monitoring_points_buffered", 0) + got.get(
                    "monitoring_points_dropped_total", 0
                )
                done = got.get('monitoring_plugin_timeouts_total"faulty_plugins:HangingOncePlugin"')
                return got if kept == sent and done == 2 else None

            got = wait_until(settled, timeout=30)
            for _ in range(6):  # whichever worker answers, it shows both workers' counts
                assert settled()
        raising, hanging = '"faulty_plugins:RaisingPlugin"', '"faulty_plugins:HangingOncePlugin"'
        assert got["monitoring_points_buffered"] <= 2 * 20 + 2 * 20  # the bound and one tick
        assert got["monitoring_points_dropped_total"] >= sent - 80
        assert got["monitoring_points_written_total"] == 0
        assert got["monitoring_points_rejected_total"] == 0
        assert got["monitoring_write_errors_total"] >= 2
        assert got["monitoring_write_retries_total"] >= 2
        # A point reaches the plugins unless the bound drops it as it is appended (before the
        # writer's tick hands points to the sinks); there it fails or is dropped (queue full).
        seen = got[f"monitoring_plugin_errors_total{raising}"]
        seen += got[f"monitoring_plugin_points_dropped_total{raising}"]
        assert sent - got["monitoring_points_dropped_total"] <= seen <= sent
        assert got[f"monitoring_plugin_timeouts_total{raising}"] == 0
        assert got[f"monitoring_plugin_errors_total{hanging}"] == 0
        assert "monitoring_last_write_timestamp_seconds" not in got  # never written


def influx_values(influx: InfluxD, query: str) -> dict[str, float]:
    """``{tag value: value}`` of an InfluxQL query grouped by one tag (``""``: no group)."""
    result = {}
    for series in influx.query(query, DATABASE):
        tag = next(iter(series.get("tags", {}).values()), "")
        result[tag] = series["values"][0][1]
    return result


def promql_values(prometheus, query: str, label: str = "") -> dict[str, float]:
    """``{label value: value}`` of an instant query (``""`` for a query without ``by``)."""
    return {
        item["metric"].get(label, ""): float(item["value"][1]) for item in prometheus.query(query)
    }


class TestExampleApp:
    def test_prometheus_scrapes_every_family(self, tmp_path, prometheus_factory):
        """The example service with 2 workers serves the demo's 200 requests (every series,
        licence warnings included); Prometheus scrapes it, and one query per family gives
        what was sent and what InfluxDB stored from the same points."""
        calls = plan(random.Random(2024))
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        began = time.time()
        with InfluxD() as influx, (tmp_path / "app.log").open("wb") as log:
            influx.create_database(DATABASE)
            service = start_service(influx, port, tmp_path, log)
            try:
                wait_for(lambda: ready(base_url), 60, "example_app to start")
                prometheus = prometheus_factory(f"127.0.0.1:{port}")
                with ThreadPoolExecutor(8) as pool:
                    statuses = list(pool.map(lambda call: send(base_url, call), calls))
                wait_until(lambda: counts(influx).get("requests") == 200, 60)
                self.check_families(prometheus, influx, statuses, began)
            finally:
                stop_service(service)

    @staticmethod
    def check_families(prometheus, influx, statuses, began) -> None:
        def expect(query: str, stored: Callable[[], dict], label: str = "") -> dict:
            """Wait until the scraped values of ``query`` equal what InfluxDB holds (both read
            again each time: the last batches may still be on their way); return those."""
            expected: dict = {}

            def same() -> bool:
                nonlocal expected
                expected = stored()
                return promql_values(prometheus, query, label) == expected

            try:
                wait_until(same, 30)
            except AssertionError:
                got = promql_values(prometheus, query, label)
                diff = {k: (got.get(k), expected.get(k)) for k in got.keys() | expected.keys()}
                wrong = {k: pair for k, pair in diff.items() if pair[0] != pair[1]}
                raise AssertionError(f"{query}: (scraped, stored) differ for {wrong}") from None
            return expected

        def estimators() -> dict[str, int]:
            stored = counts(influx)
            return {name: stored.get(name, 0) for name in ESTIMATOR_SERIES}

        def by_batch() -> dict[str, int]:
            found: collections.Counter[str] = collections.Counter()
            regex = f"/^({'|'.join(ESTIMATOR_SERIES)})$/"
            query = f"SELECT COUNT(execution_time) FROM {regex} GROUP BY batch_size"
            for series in influx.query(query, DATABASE):
                found[count_range(series["tags"]["batch_size"])] += series["values"][0][1]
            return found

        def tasks() -> dict[str, int]:
            query = "SELECT COUNT(execution_time) FROM sdkloop_task GROUP BY image_count"
            found = influx_values(influx, query)
            return {"3-4" if key == "3" else key: value for key, value in found.items()}

        def used() -> dict[str, float]:
            usages = influx.query("SELECT SUM(*) FROM usages_statistic", DATABASE)[0]
            return {
                column.removeprefix("sum_").removesuffix("_usages"): value
                for column, value in zip(usages["columns"], usages["values"][0], strict=True)
                if column != "time"
            }

        def newest() -> dict[str, float]:
            found = influx.query("SELECT LAST(liveness_balance) FROM licensing", DATABASE)
            return {"": found[0]["values"][0][1]}

        def grouped(query: str) -> Callable[[], dict[str, float]]:
            return lambda: influx_values(influx, query)

        def fixed(value: dict) -> Callable[[], dict]:
            return lambda: value

        classes = collections.Counter(f"{status // 100}xx" for status in statuses)
        expect("sum(request_count_total)", fixed({"": 200}))
        expect("sum(errors_count_total)", fixed({"": sum(s >= 400 for s in statuses)}))
        expect("sum(request_duration_seconds_count)", fixed({"": 200}))
        expect("sum by (status_class) (responses_total)", fixed(dict(classes)), "status_class")
        found = expect("sum by (series) (estimation_duration_seconds_count)", estimators, "series")
        assert len(found) == 38 and all(found.values())
        found = expect(
            "sum by (batch_size) (estimation_duration_seconds_count)", by_batch, "batch_size"
        )
        assert len(found) > 1
        loads = grouped("SELECT COUNT(size) FROM image_load GROUP BY format")
        found = expect("sum by (format) (image_load_duration_seconds_count)", loads, "format")
        assert set(found) == {"JPEG", "PNG"}
        sizes = grouped("SELECT SUM(size) FROM image_load GROUP BY format")
        expect("sum by (format) (image_load_size_bytes_sum)", sizes, "format")
        found = expect(
            "sum by (image_count) (sdkloop_task_duration_seconds_count)", tasks, "image_count"
        )
        assert set(found) == {"1", "3-4"}
        found = expect("sum by (estimator) (usages_total)", used, "estimator")
        assert len(found) == 23 and sum(found.values()) > 0
        reports = grouped("SELECT COUNT(liveness_balance) FROM licensing GROUP BY license_status")
        found = expect("sum by (status) (license_reports_total)", reports, "status")
        assert set(found) == {"warning", "error"}
        expect("liveness_balance", newest)
        expect("sum(monitoring_points_written_total)", lambda: {"": sum(counts(influx).values())})
        for name in ("buffered", "dropped_total", "rejected_total"):
            expect(f"sum(monitoring_points_{name})", fixed({"": 0}))
        expect("sum(monitoring_write_errors_total)", fixed({"": 0}))
        expect("sum(monitoring_write_retries_total)", fixed({"": 0}))
        plugin = "example_app.plugins:JsonLinesPlugin"
        expect("sum by (plugin) (monitoring_plugin_errors_total)", fixed({plugin: 0}), "plugin")
        expect("sum by (plugin) (monitoring_plugin_timeouts_total)", fixed({plugin: 0}), "plugin")
        expect(
            "sum by (plugin) (monitoring_plugin_points_dropped_total)", fixed({plugin: 0}), "plugin"
        )
        (last,) = promql_values(prometheus, "monitoring_last_write_timestamp_seconds").values()
        assert began < last < time.time()
