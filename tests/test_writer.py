"""The writer: batching, retries, splits, rejects, bound, sinks, flush and stop, logs."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from servers import InfluxDatabase, InfluxDB1, VictoriaMetrics, free_port, unique_name
from stub_server import (
    RecordedRequest,
    StubResponse,
    StubServer,
    limit_lines,
    scripted,
    throttled,
)

from luna_monitoring.core.logs import worker_label
from luna_monitoring.core.point import Point
from luna_monitoring.core.settings import Settings
from luna_monitoring.core.writer import BACKOFF_BASE_S, Writer, backoff_s, is_retried, tick_period
from luna_monitoring.storages import WriteError, encode_body, make_storage

T = TypeVar("T")
TOKEN = "tok-SECRET-9876"
SERVER_ERROR = StubResponse(503, b'{"message":"busy"}')


async def until(fn: Callable[[], T], timeout: float = 10.0) -> T:
    """Poll ``fn`` (without blocking the event loop) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s; last value {value!r}")
        await asyncio.sleep(0.01)
    return value


def points(n: int, start: int = 0, series: str = "requests") -> list[Point]:
    """``n`` points with consecutive timestamps; field ``n`` numbers them."""
    base = time.time_ns() // 1000 * 1000
    return [
        Point(series, base + i, {"service": "s", "route": "GET:/"}, {"n": i})
        for i in range(start, start + n)
    ]


def numbers(requests: list[RecordedRequest]) -> list[int]:
    """The ``n`` field of every line written, in order."""
    return [int(line.split("n=")[1].split("i ")[0]) for r in requests for line in r.lines]


def feed(writer: Writer, batch: list[Point]) -> None:
    for p in batch:
        writer.append(p)


MakeWriter = Callable[..., Awaitable[Writer]]


@pytest.fixture
async def make_writer() -> AsyncIterator[MakeWriter]:
    """``await make_writer(sinks=(), start=True, **monitoring)`` -> a Writer; stopped after.

    Request a server fixture before this one, so that it is still up when the writers stop.
    """
    writers: list[Writer] = []

    async def make(sinks: tuple = (), start: bool = True, **config: Any) -> Writer:
        settings = Settings.from_config({"flushing_period": 0.05, **config})
        writer = Writer(settings, make_storage(settings), sinks)
        writers.append(writer)
        if start:
            await writer.start()
        return writer

    yield make
    for writer in writers:
        await writer.stop()


@pytest.fixture
def stub() -> AsyncIterator[StubServer]:
    with StubServer() as server:
        yield server


def writes_failed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "monitoring: writing to" in r.getMessage()]


class TestBatching:
    async def test_full_batch_written_before_the_period(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        """batch_size points waiting are written at once; the rest waits for the period."""
        writer = await make_writer(port=stub.port, flushing_period=30, batch_size=100)
        feed(writer, points(250))
        await until(lambda: len(stub.writes) == 2, timeout=2)
        assert [len(r.lines) for r in stub.writes] == [100, 100]
        assert writer.stats["points_buffered"] == 50

    async def test_period_flush_writes_a_partial_batch(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        writer = await make_writer(port=stub.port, flushing_period=0.2)
        feed(writer, points(3))
        await until(lambda: stub.writes)
        assert numbers(stub.writes) == [0, 1, 2]

    async def test_batches_keep_order_and_size(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        writer = await make_writer(port=stub.port, start=False, batch_size=300)
        feed(writer, points(1000))
        assert await writer.flush()
        assert [len(r.lines) for r in stub.writes] == [300, 300, 300, 100]
        assert numbers(stub.writes) == list(range(1000))
        assert writer.stats["points_written"] == 1000


class TestCompressAhead:
    """With gzip, the next full batch is compressed while the write before it is in flight."""

    @pytest.mark.parametrize("version", [1, 2])
    async def test_bodies_compressed_ahead_are_the_same_batches_in_order(
        self, stub: StubServer, make_writer: MakeWriter, version: int
    ) -> None:
        writer = await make_writer(
            port=stub.port, start=False, batch_size=300, gzip=True, version=version
        )
        feed(writer, points(1000))
        assert await writer.flush()
        assert [len(r.lines) for r in stub.writes] == [300, 300, 300, 100]
        assert {r.content_encoding for r in stub.writes} == {"gzip"}
        assert numbers(stub.writes) == list(range(1000))
        # Batches 2 and 3 were full behind the write before them; the last was not.
        assert writer.bodies_compressed_ahead == 2
        assert writer.stats["points_written"] == 1000

    async def test_not_without_gzip(self, stub: StubServer, make_writer: MakeWriter) -> None:
        writer = await make_writer(port=stub.port, start=False, batch_size=300, gzip=False)
        feed(writer, points(1000))
        assert await writer.flush()
        assert numbers(stub.writes) == list(range(1000))
        assert writer.bodies_compressed_ahead == 0

    async def test_413_split_sends_the_halves_in_order(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        stub.responder = limit_lines(30)
        writer = await make_writer(port=stub.port, start=False, batch_size=100, gzip=True)
        feed(writer, points(250))
        assert await writer.flush()
        accepted = [r for r in stub.writes if len(r.lines) <= 30]
        assert numbers(accepted) == list(range(250))
        assert (writer.stats["points_written"], writer.stats["points_rejected"]) == (250, 0)
        # The body made ahead of the refused 100 lines is not sent; those of the halves are.
        assert 0 < writer.bodies_compressed_ahead < len(accepted)

    async def test_lines_dropped_while_in_flight_make_the_body_anew(self) -> None:
        """The bound drops the oldest waiting lines during a write: the body compressed
        ahead is of other lines, so the next write compresses its own."""
        settings = Settings.from_config({"gzip": True, "batch_size": 100, "max_buffer_points": 300})
        bodies: list[bytes] = []

        class Storage:
            accepts_gzipped = True

            async def write(self, body: bytes) -> None:
                data = await encode_body(body, True)
                if not bodies:  # the first write is in flight: 200 more points come
                    feed(writer, points(200, start=300))
                    writer._drain()  # the bound: 100 owed by the wire, 100 oldest waiting go
                bodies.append(gzip.decompress(data))

            async def close(self) -> None:
                pass

        writer = Writer(settings, Storage())
        feed(writer, points(300))
        writer._drain()
        assert await writer.flush()
        lines = [line for body in bodies for line in body.decode().split("\n")]
        written = [int(line.split("n=")[1].split("i ")[0]) for line in lines]
        assert written == [*range(100), *range(200, 500)]
        assert (writer.stats["points_written"], writer.stats["points_dropped"]) == (400, 100)
        # Made ahead: 100..199 (dropped, not sent: 200..299 compressed anew), then 300..399
        # and 400..499, sent.
        assert writer.bodies_compressed_ahead == 2


class TestRealServers:
    async def test_v2_into_victoria_metrics(
        self, make_writer: MakeWriter, victoria: VictoriaMetrics
    ) -> None:
        series = unique_name("w")
        writer = await make_writer(port=victoria.port, token=TOKEN, batch_size=700)
        feed(writer, points(2000, series=series))
        assert await writer.flush()
        assert victoria.count_points(series, "n") == 2000
        assert writer.stats["points_written"] == 2000

    async def test_victoriametrics_dialect_keeps_an_injected_line_in_its_point(
        self, make_writer: MakeWriter, victoria: VictoriaMetrics
    ) -> None:
        """The issue's attack: a string with a line break and a field key with a quote."""
        series, now_ns = unique_name("w"), time.time_ns() // 10**6 * 10**6
        injected = f"boom\ninjected_{series},host=evil value=666 {now_ns}"
        config = {"port": victoria.port, "token": TOKEN, "influx_dialect": "victoriametrics"}
        writer = await make_writer(**config)
        feed(writer, [Point(series, now_ns, {"t": "C:\\dir\\"}, {"errors": injected, 'k"': 1})])
        assert await writer.flush()
        stored = victoria.export(f'{{__name__=~"{series}_.*|injected_{series}_.*"}}')
        assert sorted((s["metric"]["__name__"], s["metric"]["t"]) for s in stored) == [
            (f"{series}_errors", "C:\\dir\\"),
            (f'{series}_k\\"', "C:\\dir\\"),
        ]
        assert writer.stats["points_written"] == 1

    async def test_v1_into_influxdb(
        self, make_writer: MakeWriter, influx_db: InfluxDatabase
    ) -> None:
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        writer = await make_writer(batch_size=700, **config)
        feed(writer, points(2000))
        assert await writer.flush()
        assert influx_db.count("requests") == 2000

    async def test_database_created_later_gets_the_points(
        self, make_writer: MakeWriter, influx_db: InfluxDatabase
    ) -> None:
        """404 (database not there yet) keeps the points and retries."""
        name = unique_name("late")
        config = {"version": 1, "port": influx_db.server.port, "database": name}
        writer = await make_writer(max_retry_delay_s=0.2, **config)
        feed(writer, points(50))
        await until(lambda: writer.stats["write_errors"] >= 2)
        influx_db.server.create_database(name)
        try:
            await until(lambda: writer.stats["points_written"] == 50)
            assert influx_db.server.count(name, "requests") == 50
        finally:
            influx_db.server.drop_database(name)

    async def test_bad_data_does_not_block_later_batches(
        self,
        make_writer: MakeWriter,
        influx_db: InfluxDatabase,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A field type conflict (400 partial write) drops only the bad line."""
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        writer = await make_writer(start=False, **config)
        now = time.time_ns()
        writer.append(Point("m", now, {}, {"x": 1}))
        assert await writer.flush()
        for i, x in enumerate([2, "text", 3]):
            writer.append(Point("m", now + 1 + i, {}, {"x": x}))
        assert await writer.flush()
        writer.append(Point("m", now + 10, {}, {"x": 4}))
        assert await writer.flush()
        assert [row["x"] for row in influx_db.query("SELECT * FROM m")] == [1, 2, 3, 4]
        stats = writer.stats
        assert (stats["points_written"], stats["points_rejected"]) == (4, 1)
        [message] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert "rejected 1 points as bad data (1 in all): HTTP 400: partial write" in message
        assert "field type conflict" in message


class TestRetries:
    async def test_429_waits_for_retry_after(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        stub.responder = throttled(1, retry_after=1)
        writer = await make_writer(port=stub.port)
        feed(writer, points(10))
        await until(lambda: len(stub.writes) == 2)
        first, second = stub.writes
        assert second.received_at - first.received_at >= 1.0
        assert numbers([second]) == list(range(10))
        await until(lambda: writer.stats["points_written"] == 10)
        assert writer.stats["retries"] == 1

    async def test_413_splits_the_batch_in_halves(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        stub.responder = limit_lines(30)
        writer = await make_writer(port=stub.port, start=False, batch_size=100)
        feed(writer, points(100))
        assert await writer.flush()
        assert [len(r.lines) for r in stub.writes] == [100, 50, 25, 25, 25, 25]
        assert numbers(stub.writes[2:]) == list(range(100))
        assert (writer.stats["points_written"], writer.stats["points_rejected"]) == (100, 0)

    async def test_413_for_a_single_line_rejects_it(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        stub.responder = limit_lines(0)
        writer = await make_writer(port=stub.port, start=False)
        feed(writer, points(4))
        assert await writer.flush()
        assert [len(r.lines) for r in stub.writes] == [4, 2, 1, 1, 1, 1]
        assert writer.stats["points_rejected"] == 4

    async def test_server_error_retried_and_written_once(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        stub.responder = scripted(SERVER_ERROR, SERVER_ERROR)
        writer = await make_writer(port=stub.port, max_retry_delay_s=0.1)
        feed(writer, points(20))
        await until(lambda: writer.stats["points_written"] == 20)
        assert numbers(stub.writes) == list(range(20)) * 3
        assert stub.writes[2].lines == stub.writes[0].lines
        stats = writer.stats
        assert (stats["write_errors"], stats["retries"], stats["points_buffered"]) == (2, 2, 0)

    async def test_timeout_retried(self, stub: StubServer, make_writer: MakeWriter) -> None:
        stub.responder = scripted(StubResponse(delay=1.0))
        writer = await make_writer(port=stub.port, write_timeout_s=0.2, max_retry_delay_s=0.1)
        feed(writer, points(5))
        await until(lambda: writer.stats["points_written"] == 5)
        assert writer.stats["write_errors"] == 1

    async def test_refused_credentials_logged_once_points_kept(
        self, stub: StubServer, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        """401 is a configuration error: one clear ERROR; points stay and are retried."""
        stub.responder = StubResponse(401, b'{"message":"unauthorized access"}')
        writer = await make_writer(port=stub.port, token=TOKEN, max_retry_delay_s=0.05)
        feed(writer, points(10))
        await until(lambda: writer.stats["write_errors"] >= 5)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage() for r in errors] == [
            f"monitoring: InfluxDB v2 at http://127.0.0.1:{stub.port}, bucket 'luna_monitoring' "
            "refused the credentials (HTTP 401: unauthorized access): check token, or username "
            f"and password; points stay buffered and writes are retried [{worker_label()}]"
        ]
        assert writer.stats["points_buffered"] == 10
        stub.responder = StubResponse(204)
        await until(lambda: writer.stats["points_written"] == 10)

    async def test_outage_logged_once_then_a_recovery_summary(
        self, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        port = free_port()
        writer = await make_writer(port=port, max_retry_delay_s=0.05)
        feed(writer, points(10))
        await until(lambda: writer.stats["write_errors"] >= 10)
        assert len(writes_failed(caplog)) == 1
        with StubServer(port=port):
            await until(lambda: writer.stats["points_written"] == 10)
        retries = writer.stats["retries"]
        assert retries >= 10
        recovered = [r.getMessage() for r in caplog.records if "again after" in r.getMessage()]
        assert len(recovered) == 1
        assert recovered[0].endswith(f" s, {retries} retries [{worker_label()}]")
        assert len(writes_failed(caplog)) == 1

    async def test_unexpected_storage_error_is_retried_without_its_text(
        self, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        writer = await make_writer(max_retry_delay_s=0.05)
        calls = []

        async def flaky(body: bytes) -> None:
            calls.append(body)
            if len(calls) == 1:
                raise RuntimeError(f"token {TOKEN}")

        writer.storage.write = flaky
        feed(writer, points(3))
        await until(lambda: writer.stats["points_written"] == 3)
        assert "unexpected RuntimeError" in writes_failed(caplog)[0]
        assert TOKEN not in caplog.text


class TestBackoff:
    @pytest.mark.parametrize("status", [None, 401, 403, 404, 408, 429, 500, 502, 503, 504])
    def test_retried(self, status: int | None) -> None:
        assert is_retried(status)

    @pytest.mark.parametrize("status", [400, 405, 413, 415, 422])
    def test_not_retried(self, status: int) -> None:
        assert not is_retried(status)

    def test_full_jitter_doubles_up_to_the_cap(self) -> None:
        for failures in range(1, 40):
            ceiling = min(30.0, BACKOFF_BASE_S * 2 ** (failures - 1))
            delays = [backoff_s(failures, 30.0) for _ in range(200)]
            assert min(delays) >= 0 and max(delays) <= ceiling
            assert max(delays) > ceiling / 2

    async def test_retry_after_is_at_least_waited(self, make_writer: MakeWriter) -> None:
        writer = await make_writer(start=False, max_retry_delay_s=0.01)
        writer._failed(WriteError(429, "slow down", retry_after_s=5))
        assert writer._retry_at - asyncio.get_running_loop().time() > 4.9


class TestBound:
    async def test_oldest_dropped_counted_and_warned_rate_limited(
        self, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        port = free_port()
        writer = await make_writer(port=port, max_buffer_points=1000, max_retry_delay_s=0.05)
        feed(writer, points(2500))
        assert writer.stats["points_dropped"] == 1500  # at once: the bound holds on append
        await until(lambda: any("buffer full" in r.getMessage() for r in caplog.records))
        feed(writer, points(500, start=2500))
        await until(lambda: writer.stats["points_dropped"] == 2000)
        await until(lambda: writer.stats["points_buffered"] == writer._buffer.lines == 1000)
        warnings = [r.getMessage() for r in caplog.records if "buffer full" in r.getMessage()]
        assert len(warnings) == 1
        assert "dropped the 1500 oldest points (1500 in all)" in warnings[0]
        with StubServer(port=port) as stub:
            await until(lambda: writer.stats["points_written"] == 1000)
        assert numbers(stub.writes) == list(range(2000, 3000))

    async def test_outage_backlog_is_packed_then_delivered_exactly(
        self, own_influxdb: InfluxDB1, make_writer: MakeWriter
    ) -> None:
        """InfluxDB down while 6,000 points come, max_buffer_points=5000: the tail beyond
        1,250 lines is packed in blocks, the 1,000 oldest are dropped; once InfluxDB is up
        again the 5,000 newest are stored, each once."""
        own_influxdb.create_database("packed")
        own_influxdb.stop()
        config = {"version": 1, "port": own_influxdb.port, "database": "packed"}
        writer = await make_writer(
            batch_size=100, max_buffer_points=5000, max_retry_delay_s=0.2, **config
        )
        batch = points(6000)
        for start in range(0, 6000, 500):
            feed(writer, batch[start : start + 500])
            await until(lambda: not writer._buffer.raw)  # a tick took them: encoded, packed
        await until(lambda: writer.stats["points_buffered"] == 5000 and not writer._buffer.raw)
        buffer = writer._buffer
        assert buffer.packs >= 3 and buffer._packed
        assert (writer.stats["points_dropped"], writer.stats["write_errors"] > 0) == (1000, True)

        own_influxdb.start()
        await until(lambda: writer.stats["points_buffered"] == 0, timeout=30)
        assert (writer.stats["points_written"], writer.stats["points_dropped"]) == (5000, 1000)
        rows = own_influxdb.query("SELECT n FROM requests", "packed")
        assert sorted(row["n"] for row in rows) == list(range(1000, 6000))


class TestSinks:
    async def test_sinks_get_every_point_in_the_background(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        received: list[Point] = []
        writer = await make_writer(port=stub.port, sinks=(received.extend,))
        batch = points(30)
        feed(writer, batch)
        assert received == []
        await until(lambda: len(received) == 30)
        assert received == batch

    async def test_sinks_get_named_points_for_buffered_plain_tuples(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        received: list[Point] = []
        writer = await make_writer(port=stub.port, sinks=(received.extend,))
        batch = points(3)
        feed(writer, [tuple(point) for point in batch])
        await until(lambda: len(received) == 3)
        assert received == batch and {type(point) for point in received} == {Point}
        await until(lambda: writer.stats["points_written"] == 3)

    async def test_failing_sink_is_counted_and_stops_nothing(
        self, stub: StubServer, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        received: list[Point] = []

        def broken(batch: list[Point]) -> None:
            raise ValueError("sink bug")

        writer = await make_writer(port=stub.port, sinks=(broken, received.extend))
        for i in range(3):
            feed(writer, points(5, start=5 * i))
            await until(lambda n=5 * (i + 1): len(received) == n)
        await until(lambda: writer.stats["points_written"] == 15)
        assert writer.stats["sink_errors"] == 3
        logged = [r.getMessage() for r in caplog.records if "sink" in r.getMessage()]
        assert len(logged) == 1
        assert "failed 1 time(s) (ValueError: sink bug); delivery goes on" in logged[0]


class TestFlushAndStop:
    async def test_flush_reports_failure_and_keeps_points(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        stub.responder = scripted(SERVER_ERROR)
        writer = await make_writer(port=stub.port, start=False)
        feed(writer, points(7))
        assert not await writer.flush()
        assert writer.stats["points_buffered"] == 7
        assert await writer.flush()
        assert writer.stats["points_written"] == 7

    async def test_stop_writes_what_is_left(
        self, stub: StubServer, make_writer: MakeWriter
    ) -> None:
        writer = await make_writer(port=stub.port, flushing_period=30)
        feed(writer, points(10))
        await writer.stop()
        assert numbers(stub.writes) == list(range(10))

    async def test_stop_twice_at_once_logs_the_loss_once(
        self, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Stop listeners run twice (Ctrl-C, then the main process's stop): one summary."""
        writer = await make_writer(port=free_port(), shutdown_timeout_s=0.3)
        feed(writer, points(5))
        await asyncio.gather(writer.stop(), writer.stop())
        await writer.stop()
        lost = [
            r.getMessage() for r in caplog.records if "could not be delivered" in r.getMessage()
        ]
        assert len(lost) == 1 and lost[0].startswith("monitoring: 5 points could not be delivered")

    async def test_start_logs_where_points_go_once(
        self, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One INFO line at start: target, flushing period, batch size, bound, gzip."""
        caplog.set_level(logging.INFO, logger="luna_monitoring")
        await make_writer(version=1, port=8087, database="db", batch_size=100, gzip=True)
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
            "monitoring: points go to InfluxDB v1 at http://127.0.0.1:8087, database 'db' every "
            "flushing_period=0.05 s in batches of at most batch_size=100, holding at most "
            f"max_buffer_points=100000, gzip on [{worker_label()}]"
        ]

    @pytest.mark.parametrize("hung", [False, True], ids=["refused", "hung"])
    async def test_stop_is_bounded_and_logs_undelivered(
        self, make_writer: MakeWriter, caplog: pytest.LogCaptureFixture, hung: bool
    ) -> None:
        with StubServer(StubResponse(delay=30)) as stub:
            port = stub.port if hung else free_port()
            writer = await make_writer(port=port, shutdown_timeout_s=0.5)
            feed(writer, points(42))
            began = time.monotonic()
            await writer.stop()
            elapsed = time.monotonic() - began
        assert 0.4 <= elapsed < 0.9
        assert writer.stats["points_buffered"] == 42
        assert "monitoring: 42 points could not be delivered" in caplog.text


class TestConfigurationErrors:
    """What only a person can fix: named with the fix, logged once, retried slowly."""

    @staticmethod
    def _timed(writer: Writer) -> list[float]:
        """Record the time of every write the writer makes (through its real storage)."""
        times: list[float] = []
        real = writer.storage.write

        async def write(body: bytes) -> None:
            times.append(time.monotonic())
            await real(body)

        writer.storage.write = write
        return times

    @pytest.mark.parametrize(
        ("config", "fix"),
        [
            (
                {"version": 1, "retention_policy": "week"},
                "retention policy 'week' not found on database '{db}' (500): create it, or "
                "leave retention_policy empty (HTTP 500: retention policy not found: week)",
            ),
            (
                {"version": 1, "database": "not_yet"},
                "database 'not_yet' not found (404): create it first "
                '(HTTP 404: database not found: "not_yet")',
            ),
            (
                {"version": 2},
                "no /api/v2/write at http://127.0.0.1:{port} (404): for InfluxDB 1.x before 1.8 "
                "use version 1 (HTTP 404: 404 page not found)",
            ),
        ],
        ids=["retention-policy", "database", "v2-on-influxdb-1.6"],
    )
    async def test_named_with_the_fix_logged_once_and_retried_at_the_cap(
        self,
        influx_db: InfluxDatabase,
        make_writer: MakeWriter,
        caplog: pytest.LogCaptureFixture,
        config: dict[str, Any],
        fix: str,
    ) -> None:
        """InfluxDB 1.x's answers: one ERROR naming the fix; writes only every max_retry_delay_s."""
        port = influx_db.server.port
        config = {
            "port": port,
            "database": influx_db.name,
            "max_retry_delay_s": 0.4,
            "shutdown_timeout_s": 0.5,
            **config,
        }
        writer = await make_writer(**config)
        times = self._timed(writer)
        feed(writer, points(10))
        await until(lambda: len(times) >= 4)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.39, gaps
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        target = writer.settings.target
        assert errors == [
            f"monitoring: {target}: {fix.format(db=influx_db.name, port=port)}; points stay "
            f"buffered and writes are retried every max_retry_delay_s=0.4 s [{worker_label()}]"
        ]
        assert writer.stats["points_buffered"] == 10

    async def test_delivered_once_fixed(
        self, influx_db: InfluxDatabase, make_writer: MakeWriter
    ) -> None:
        """Creating the missing retention policy is enough: the buffered points arrive."""
        writer = await make_writer(
            version=1,
            port=influx_db.server.port,
            database=influx_db.name,
            retention_policy="later",
            max_retry_delay_s=0.2,
        )
        feed(writer, points(10))
        await until(lambda: writer.stats["write_errors"] >= 1)
        influx_db.server.execute(
            f'CREATE RETENTION POLICY "later" ON "{influx_db.name}" DURATION 7d REPLICATION 1'
        )
        await until(lambda: writer.stats["points_written"] == 10)
        assert influx_db.query('SELECT count(n) FROM "later"."requests"')[0]["count"] == 10


@pytest.mark.parametrize(
    ("period", "arrived", "expected"),
    [
        (0.05, 0, 0.05),  # idle: the longest
        (0.05, 150, 0.05),  # a quiet worker: never longer than the longest
        (0.05, 1500, 0.01),  # 30,000 points/s: about 300 a tick
        (0.01, 300, 0.01),  # steady at that rate
        (0.004, 100_000, 0.004),  # never shorter than MIN_TICK_S
    ],
)
def test_a_busy_worker_ticks_sooner(period, arrived, expected):
    """The next tick comes when about TICK_TARGET_POINTS more points are expected."""
    assert tick_period(period, arrived, 0.05) == pytest.approx(expected)
