"""Tests proving the real-server harness (tests/servers.py, tests/stub_server.py)."""

from __future__ import annotations

import asyncio
import gzip
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from servers import (
    InfluxDatabase,
    InfluxDB1,
    Prometheus,
    VictoriaMetrics,
    http_request,
    unique_name,
    wait_until,
)
from stub_server import NO_CONTENT, StubResponse, StubServer, limit_lines, throttled

TWO_LINES = (
    b'cpu,host=a usage=5i,load=0.5,state="ok" 1700000000000000001\n'
    b'cpu,host=b usage=7i,load=1.25,state="busy \\"x\\"" 1700000000000000002\n'
)
TWO_ROWS = [
    {"time": 1700000000000000001, "host": "a", "load": 0.5, "state": "ok", "usage": 5},
    {"time": 1700000000000000002, "host": "b", "load": 1.25, "state": 'busy "x"', "usage": 7},
]


def test_wait_until_returns_value_or_raises_with_last_value() -> None:
    calls = iter([0, None, "ready"])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.001) == "ready"
    with pytest.raises(AssertionError, match="last value: 0"):
        wait_until(lambda: 0, timeout=0.05, interval=0.01)


def test_missing_binary_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="influxd"):
        InfluxDB1()


def test_influxdb_roundtrip_exact(influx_db: InfluxDatabase) -> None:
    status, body, _ = influx_db.write_lines(TWO_LINES)
    assert (status, body) == (204, b"")

    rows = influx_db.query('SELECT * FROM "cpu"')
    assert rows == TWO_ROWS
    assert isinstance(rows[0]["usage"], int)
    assert isinstance(rows[0]["load"], float)
    assert influx_db.count("cpu") == 2

    series = influx_db.query_series('SELECT "usage" FROM "cpu" GROUP BY "host"')
    assert [s["tags"] for s in series] == [{"host": "a"}, {"host": "b"}]
    assert influx_db.query('SELECT "usage" FROM "cpu" GROUP BY "host"') == [
        {"host": "a", "time": 1700000000000000001, "usage": 5},
        {"host": "b", "time": 1700000000000000002, "usage": 7},
    ]


def test_influxdb_gzip_and_errors(influx_db: InfluxDatabase) -> None:
    assert influx_db.write_lines(b"m v=1i 1", gzip=True).status == 204
    assert influx_db.count("m") == 1
    assert influx_db.write_lines(b'm v="str" 2').status == 400  # field type conflict
    assert influx_db.server.write_lines("no_such_db", b"m v=1i 1").status == 404
    # InfluxDB 1.6 has no v2 write API.
    assert http_request("POST", f"{influx_db.url}/api/v2/write?bucket=x", b"m v=1").status == 404


def test_influxdb_sigkill_restart_keeps_data_and_port(own_influxdb: InfluxDB1) -> None:
    server = own_influxdb
    server.create_database("keep")
    assert server.write_lines("keep", TWO_LINES).status == 204
    # The 204 comes after the WAL write (wal-fsync-delay = 0s fsyncs first).
    assert sum(f.stat().st_size for f in Path(server.dir, "wal").rglob("*.wal")) > 0
    port, rpc_port = server.port, server.rpc_port

    server.kill(signal.SIGKILL)
    assert not server.is_running
    assert not server.ping(timeout=0.2)

    server.restart()
    assert (server.port, server.rpc_port) == (port, rpc_port)
    assert server.query('SELECT * FROM "cpu"', db="keep") == TWO_ROWS


def test_influxdb_graceful_restart(own_influxdb: InfluxDB1) -> None:
    own_influxdb.create_database("d")
    own_influxdb.write_lines("d", b"m v=1i 1")
    own_influxdb.restart()
    assert own_influxdb.count("d", "m") == 1


def test_influxdb_sigstop_times_out_and_sigcont_recovers(own_influxdb: InfluxDB1) -> None:
    own_influxdb.kill(signal.SIGSTOP)
    with pytest.raises(TimeoutError):
        http_request("GET", f"{own_influxdb.url}/ping", timeout=0.3)
    own_influxdb.kill(signal.SIGCONT)
    assert wait_until(lambda: own_influxdb.ping(timeout=0.5), timeout=5)


def test_victoria_gzip_v2_write_naming(victoria: VictoriaMetrics) -> None:
    m = unique_name("vm")
    now_ns = time.time_ns()
    body = (
        f"{m},host=a,region=eu usage=5i,load=0.5 {now_ns}\n"
        f"{m},host=b usage=7i {now_ns + 1_000_000}\n"
        f"{m},host=b usage=8i {now_ns + 2_000_000}\n"
    ).encode()
    resp = victoria.write_lines(body, bucket="mybucket", org="myorg", gzip=True)
    assert resp.status == 204

    series = victoria.export(f'{{__name__=~"{m}_.*"}}')
    by_key = {(s["metric"]["__name__"], s["metric"]["host"]): s for s in series}
    now_ms = now_ns // 1_000_000
    assert by_key[(f"{m}_usage", "a")]["metric"] == {
        "__name__": f"{m}_usage",
        "host": "a",
        "region": "eu",  # tags -> labels; bucket/org add no label
    }
    assert by_key[(f"{m}_usage", "a")]["values"] == [5]
    assert by_key[(f"{m}_usage", "b")]["values"] == [7, 8]
    assert by_key[(f"{m}_usage", "b")]["timestamps"] == [now_ms + 1, now_ms + 2]
    assert by_key[(f"{m}_load", "a")]["values"] == [0.5]
    assert victoria.count_points(m, "usage") == 3
    assert victoria.series_count(f'{{__name__=~"{m}_.*"}}') == 3


def test_victoria_influxdb_client_async_gzip(victoria: VictoriaMetrics) -> None:
    m = unique_name("vmc")

    async def write() -> None:
        async with InfluxDBClientAsync(
            url=victoria.url, token="t", org="myorg", enable_gzip=True
        ) as client:
            ok = await client.write_api().write(
                bucket="mybucket", record=[f"{m},host=h v=1i 1700000000000000000"]
            )
            assert ok is True

    asyncio.run(write())
    [series] = victoria.export(f"{m}_v")
    assert series["metric"] == {"__name__": f"{m}_v", "host": "h"}
    assert series["timestamps"] == [1700000000000]


def test_stub_server_records_and_scripts() -> None:
    with StubServer(throttled(1, retry_after=1, then=limit_lines(2))) as stub:
        first = http_request("POST", f"{stub.url}/api/v2/write?bucket=b", b"a 1\nb 2")
        assert (first.status, first.headers["Retry-After"]) == (429, "1")
        assert http_request("POST", f"{stub.url}/write?db=d", b"a 1\nb 2\nc 3").status == 413
        assert http_request("POST", f"{stub.url}/write?db=d", b"a 1\nb 2").status == 204

        gz_body = gzip.compress(b"x 1\n")
        stub.responder = NO_CONTENT
        http_request("POST", f"{stub.url}/api/v2/write", gz_body, {"Content-Encoding": "gzip"})
        reqs = stub.wait_for_requests(4)
        assert [r.path for r in reqs] == ["/api/v2/write", "/write", "/write", "/api/v2/write"]
        assert reqs[0].query == {"bucket": "b"}
        assert reqs[3].content_encoding == "gzip"
        assert (reqs[3].raw_body, reqs[3].lines) == (gz_body, ["x 1"])
        assert len(stub.writes) == 4


def test_prometheus_scrapes_stub(prometheus_factory: Callable[..., Prometheus]) -> None:
    metrics = b'# TYPE luna_stub_value gauge\nluna_stub_value{kind="x"} 42\n'
    headers = {"Content-Type": "text/plain; version=0.0.4"}
    with StubServer(StubResponse(200, metrics, headers)) as stub:
        prom = prometheus_factory(f"127.0.0.1:{stub.port}")
        [sample] = prom.wait_query("luna_stub_value", timeout=30)
        assert sample["metric"]["kind"] == "x"
        assert sample["value"][1] == "42"
        assert stub.requests[0].path == "/metrics"
