"""Delivery when InfluxDB is in trouble, end to end.

A real Sanic service (``tests/apps/delivery_app.py``, one process) with MonitoringExtension
writes to a real InfluxDB 1.x that is killed, frozen, absent or misaddressed; the tests count
what arrives, read the service's stats and grep its log output.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from servers import (
    HttpResponse,
    InfluxDatabase,
    InfluxDB1,
    free_port,
    http_request,
    spawn_app,
    wait_until,
)
from stub_server import RecordedRequest, StubResponse, StubServer

from luna_monitoring.core.runtime import INSTANCE_OFFSET_ENV

APP = Path(__file__).parent / "apps" / "delivery_app.py"
FAILED = "monitoring: writing to"
RECOVERED = "again after"


class AppProcess:
    """``delivery_app.py`` running in a subprocess (``workers`` processes, each named
    ``app_name``); its stdout and stderr go to one file."""

    def __init__(
        self,
        monitoring: dict[str, Any],
        log_level: str,
        log_path: Path,
        workers: int = 1,
        app_name: str = "",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "APP_MONITORING": json.dumps(monitoring),
            "APP_PORT": str(self.port),
            "APP_LOG_LEVEL": log_level,
            "APP_WORKERS": str(workers),
            "APP_NAME": app_name,
        }
        self.proc = spawn_app(APP, env, APP.parent, log_path)
        wait_until(self._ready, timeout=30, ignore=(OSError,))

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
        return http_request("GET", f"{self.url}/stats", timeout=1).status == 200

    def get(self, path: str) -> HttpResponse:
        """GET ``path``; a 200 answer (anything else fails the test)."""
        response = http_request("GET", f"{self.url}{path}")
        assert response.status == 200, response
        return response

    def work(self) -> str:
        """GET /work; the request id of its ``requests`` point."""
        return request_id(self.get("/work").headers)

    def stats(self) -> dict[str, int]:
        """The writer's counters."""
        return self.get("/stats").json()

    def rss_mib(self) -> float:
        """Resident memory of the service."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def log(self) -> str:
        """Everything the service printed so far."""
        return self.log_path.read_text(errors="replace")

    def log_count(self, text: str) -> int:
        """Lines of the log that contain ``text``, counted once (Sanic repeats some lines)."""
        return sum(text in line for line in self.log().splitlines() if "luna_monitoring" in line)

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM; wait for the exit; return the seconds it took."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - began

    def close(self) -> None:
        """Kill the service if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., AppProcess]]:
    """``start_app(log_level="INFO", **monitoring)`` -> a running :class:`AppProcess`."""
    apps: list[AppProcess] = []

    def start(log_level: str = "INFO", **monitoring: Any) -> AppProcess:
        apps.append(AppProcess(monitoring, log_level, tmp_path / f"app{len(apps)}.log"))
        return apps[-1]

    yield start
    for app in apps:
        app.close()


class Traffic:
    """``clients`` threads sending ``GET /work`` over keep-alive, each paced to ``rate`` per s.

    Records ``(start, latency, status, request_id)`` per request; stops on :meth:`stop` or after
    ``max_s`` seconds.
    """

    def __init__(self, app: AppProcess, clients: int = 2, rate: float = 50, max_s: float = 30):
        self._port = app.port
        self._interval = 1.0 / rate
        self._deadline = time.monotonic() + max_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.results: list[tuple[float, float, int, str]] = []
        self.began = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=10)
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            start = time.monotonic()
            try:
                conn.request("GET", "/work")
                response = conn.getresponse()
                response.read()
                status, rid = response.status, request_id(response.headers)
            except (OSError, http.client.HTTPException):
                conn.close()
                status, rid = 0, ""
            with self._lock:
                self.results.append((start, time.monotonic() - start, status, rid))
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        conn.close()

    def at(self, seconds: float) -> None:
        """Let the traffic run until ``seconds`` after it began."""
        time.sleep(max(0.0, self.began + seconds - time.monotonic()))

    def stop(self) -> list[tuple[float, float, int, str]]:
        """Stop the clients; all results."""
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.results

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies of the requests started between ``start`` and ``end`` s after began."""
        return sorted(
            latency
            for began, latency, _, _ in self.results
            if self.began + start <= began < self.began + end
        )


def p99(latencies: list[float]) -> float:
    """The 99th percentile of sorted ``latencies``."""
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def request_id(headers: Mapping[str, str] | http.client.HTTPMessage) -> str:
    """The ``LUNA-Request-Id`` response header."""
    return next(v for k, v in headers.items() if k.lower() == "luna-request-id")


def request_ids(results: list[tuple[float, float, int, str]]) -> list[str]:
    """The request ids answered; fails if any request failed."""
    assert [status for _, _, status, _ in results if status != 200] == []
    return sorted(rid for _, _, _, rid in results)


def stored_ids(server: InfluxDB1, db: str) -> list[str]:
    """The request ids of the ``requests`` points in ``db`` (all of ``GET /work``, 200)."""
    rows = server.query("SELECT * FROM requests", db)
    assert {(row["route"], row["status_code"]) for row in rows} == {("GET:/work", "200")}
    assert all(type(row["execution_time"]) is float for row in rows)
    return sorted(row["request_id"] for row in rows)


def wait_stored(server: InfluxDB1, db: str, n: int, timeout: float = 30.0) -> list[str]:
    """Wait until ``db`` holds at least ``n`` requests points; their request ids."""
    wait_until(lambda: server.count(db, "requests") >= n, timeout, interval=0.2)
    return stored_ids(server, db)


FAST_RETRY = {"flushing_period": 0.2, "max_retry_delay_s": 1.0, "write_timeout_s": 2.0}


class TestCrash:
    def test_sigkill_and_restart_lose_and_duplicate_nothing(
        self, own_influxdb: InfluxDB1, start_app: Callable[..., AppProcess]
    ) -> None:
        """influxd SIGKILLed under traffic and back 5 s later: every point stored exactly once."""
        own_influxdb.create_database("crash")
        app = start_app(version=1, port=own_influxdb.port, database="crash", **FAST_RETRY)
        traffic = Traffic(app, max_s=20)
        traffic.at(2.5)
        own_influxdb.kill(signal.SIGKILL)
        traffic.at(7.5)
        own_influxdb.restart()
        traffic.at(10)
        sent = request_ids(traffic.stop())

        assert len(sent) > 500
        assert wait_stored(own_influxdb, "crash", len(sent)) == sent
        stats = app.stats()
        assert stats["points_written"] == len(sent)
        assert stats["points_dropped"] == stats["points_buffered"] == 0
        assert stats["retries"] >= 1
        assert app.log_count(FAILED) == 1
        assert app.log_count(RECOVERED) == 1


class TestHang:
    def test_frozen_database_slows_no_request_and_loses_nothing(
        self, own_influxdb: InfluxDB1, start_app: Callable[..., AppProcess]
    ) -> None:
        """influxd SIGSTOPped for 5 s: requests keep their latency; every point arrives."""
        own_influxdb.create_database("hang")
        app = start_app(version=1, port=own_influxdb.port, database="hang", flushing_period=0.2)
        traffic = Traffic(app, rate=100, max_s=20)
        traffic.at(4)
        own_influxdb.kill(signal.SIGSTOP)
        traffic.at(9)
        own_influxdb.kill(signal.SIGCONT)
        traffic.at(10)
        sent = request_ids(traffic.stop())

        before, frozen = traffic.latencies(1, 4), traffic.latencies(4, 9)
        assert len(frozen) > 800
        # 3 ms of slack absorbs scheduler noise on a shared 2-core machine; a request that
        # waited for the frozen database would take seconds.
        assert p99(frozen) <= 2 * p99(before) + 0.003, (p99(before), p99(frozen))
        assert wait_stored(own_influxdb, "hang", len(sent)) == sent
        assert app.stats()["points_written"] == len(sent)


class TestDatabaseAbsent:
    def test_database_down_at_start_then_up(
        self, own_influxdb: InfluxDB1, start_app: Callable[..., AppProcess]
    ) -> None:
        """The service starts and serves without its database; points arrive once it is up."""
        own_influxdb.create_database("late")
        own_influxdb.stop()
        app = start_app(version=1, port=own_influxdb.port, database="late", **FAST_RETRY)
        sent = sorted(app.work() for _ in range(200))
        wait_until(lambda: app.stats()["write_errors"] >= 3, timeout=15)
        assert app.log_count(FAILED) == 1
        assert app.stats()["points_buffered"] == 200

        own_influxdb.start()
        assert wait_stored(own_influxdb, "late", 200) == sent
        wait_until(lambda: app.log_count(RECOVERED) == 1, timeout=5)
        assert app.log_count(FAILED) == 1

    def test_wrong_port_serves_and_says_so_once(self, start_app: Callable[..., AppProcess]) -> None:
        """Nothing listens on the port: requests succeed; the log names the problem once."""
        port = free_port()
        app = start_app(version=1, port=port, flushing_period=0.1, max_retry_delay_s=0.2)
        for _ in range(200):
            app.work()
        wait_until(lambda: app.stats()["write_errors"] >= 5, timeout=15)
        failures = [line for line in app.log().splitlines() if FAILED in line]
        assert len(failures) == 1
        assert f"127.0.0.1:{port}" in failures[0]
        assert "Cannot connect" in failures[0]
        assert app.stats()["points_buffered"] == 200


class TestBound:
    def test_buffer_bound_keeps_memory_flat_and_counts_every_drop(
        self, start_app: Callable[..., AppProcess]
    ) -> None:
        """Database down, max_buffer_points=1000: RSS stays flat; dropped = sent - buffered."""
        app = start_app(version=1, port=free_port(), max_buffer_points=1000)
        sent = 0
        for _ in range(10):
            app.get("/burst?n=5000")
            sent += 5000
        wait_until(lambda: app.stats()["points_buffered"] == 1000, timeout=5)
        rss_before = app.rss_mib()
        for _ in range(40):
            app.get("/burst?n=5000")
            sent += 5000
        for _ in range(100):
            app.work()
            sent += 1
        stats = wait_until(lambda: (s := app.stats())["points_buffered"] == 1000 and s, timeout=5)
        assert stats["points_dropped"] == sent - 1000
        assert stats["points_written"] == 0
        assert app.rss_mib() - rss_before < 5
        assert app.log_count("buffer full") >= 1

    def test_the_bound_holds_between_ticks(self, start_app: Callable[..., AppProcess]) -> None:
        """Database down, max_buffer_points=100, 400 quick requests: 100 held, 300 dropped
        (the bound is checked on every append, not only at the writer's tick)."""
        app = start_app(version=1, port=free_port(), max_buffer_points=100)
        app.get("/burst?n=400")
        stats = app.stats()
        assert (stats["points_buffered"], stats["points_dropped"]) == (100, 300)


class TestInstances:
    def test_two_instances_of_one_service_lose_no_point_to_merging(
        self,
        influx_db: InfluxDatabase,
        start_app: Callable[..., AppProcess],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Two processes with the same config (replicas) record at once: every point stored.

        Both used to stamp with residue 0, so points with equal tags in the same microsecond
        merged in InfluxDB. Each instance now draws its own offset: this fails only if the two
        draws are equal (p = 1/1024). The launcher (this test process) has drawn one of its
        own, which the two must not inherit.
        """
        monkeypatch.setenv(INSTANCE_OFFSET_ENV, f"5:{os.getpid()}")
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        apps = [start_app(flushing_period=0.2, **config) for _ in range(2)]
        rounds, per_burst = 4, 10_000

        def bursts(app: AppProcess) -> None:
            for _ in range(rounds):
                app.get(f"/burst?n={per_burst}")

        threads = [threading.Thread(target=bursts, args=(app,)) for app in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        expected = 2 * rounds * per_burst
        wait_until(lambda: sum(app.stats()["points_written"] for app in apps) == expected, 60)
        assert influx_db.count("requests") == expected


class TestShutdown:
    def test_shutdown_delivers_what_is_left(
        self, influx_db: InfluxDatabase, start_app: Callable[..., AppProcess]
    ) -> None:
        """SIGTERM before the next flush: the final flush writes every point."""
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        app = start_app(flushing_period=60, **config)
        sent = sorted(app.work() for _ in range(50))
        assert app.stats()["points_written"] == 0
        app.terminate()
        assert app.proc.returncode == 0
        assert stored_ids(influx_db.server, influx_db.name) == sent
        assert "could not be delivered" not in app.log()

    def test_shutdown_with_database_down_is_bounded_and_counts(
        self, start_app: Callable[..., AppProcess]
    ) -> None:
        """SIGTERM with the database down: exit within shutdown_timeout_s; undelivered logged."""
        app = start_app(version=1, port=free_port(), shutdown_timeout_s=1.5)
        for _ in range(300):
            app.work()
        elapsed = app.terminate()
        assert app.proc.returncode == 0
        assert 1.0 <= elapsed < 1.5 + 1.5
        assert app.log_count("300 points could not be delivered") == 1


def _echo(status: int) -> Callable[[RecordedRequest], StubResponse]:
    """A responder that answers ``status`` with everything the request carried."""

    def respond(request: RecordedRequest) -> StubResponse:
        echo = {"headers": dict(request.headers), "query": dict(request.query)}
        return StubResponse(status, json.dumps({"message": json.dumps(echo)}).encode())

    return respond


class TestSecrets:
    @pytest.mark.parametrize(
        ("monitoring", "secret"),
        [
            ({"version": 2, "token": "tok-SECRET-4242"}, "tok-SECRET-4242"),
            ({"version": 1, "username": "luna", "password": "pw-SECRET-4242"}, "pw-SECRET-4242"),
        ],
        ids=["v2-token", "v1-password"],
    )
    def test_secrets_never_appear_in_the_log(
        self, start_app: Callable[..., AppProcess], monitoring: dict[str, Any], secret: str
    ) -> None:
        """Auth refused, bad data, dropped connections, shutdown: no secret in DEBUG logs."""
        secrets = [secret, base64.b64encode(f"luna:{secret}".encode()).decode()]
        with StubServer(_echo(401)) as stub:
            app = start_app(
                log_level="DEBUG",
                port=stub.port,
                flushing_period=0.1,
                max_retry_delay_s=0.2,
                shutdown_timeout_s=1.0,
                **monitoring,
            )
            for responder in (_echo(401), _echo(400), StubResponse(drop=True), _echo(503)):
                stub.responder = responder
                seen = len(stub.writes)
                app.work()
                wait_until(lambda n=seen: len(stub.writes) > n, timeout=10)
            app.terminate()
        auth = stub.writes[0].headers["Authorization"]
        assert any(s in auth for s in secrets)
        log = app.log()
        assert "refused the credentials" in log
        assert "rejected" in log
        assert "could not be delivered" in log
        assert [s for s in secrets if s in log] == []
