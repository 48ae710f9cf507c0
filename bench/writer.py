"""Delivery throughput and memory under outage of ``Writer``.

Throughput: the time to deliver ``--points`` request points, produced in the writer's event
loop with backpressure, until every one is written (checked by reading back the count):

* ``writer``: this package's ``Writer`` with default settings but ``gzip: True`` (gzip in a
  worker thread, as for a database on another machine; ``"auto"`` would not compress for
  these loopback servers), so that every variant compresses, fed ready point tuples;
* ``record``: the same ``Writer`` fed through the public API, ``Monitoring.record("requests",
  tags=..., fields=..., time_ns=...)`` with a ``Monitoring`` made as the extensions make it
  (each call with its own tags and fields dicts, as a handler's call would);
* ``writer+WriteApiAsync``: the same ``Writer`` over influxdb-client's ``WriteApiAsync``
  with ``enable_gzip=True`` (level-9 gzip on the event loop);
* ``WriteApi(dict)`` / ``WriteApi(line)``: influxdb-client's batching ``WriteApi``
  (``WriteOptions(batch_size=5000, flush_interval=1000)``, gzip) fed the same points as
  dicts or as lines encoded by ``LineEncoder``;
* ClickHouse 18.16: the same ``Writer`` with ``storage_type: "clickhouse"`` (JSONEachRow
  rows, gzip) into the ``requests`` table of a fresh database, beside InfluxDB 1.6.

Variants alternate over ``--rounds``; figures are medians, ratios the medians of the
per-round ratios; beside each rate, the CPU time of this process (all its threads: encoding,
gzip, HTTP) per point. ``--variants`` runs only the variants of the given names (into every
database) or ``database:name``; ``--mode throughput`` or ``outage`` runs only one of the two
parts. The database runs pinned to CPU 1, this process to CPU 0. InfluxDB 1.6 has no
``/api/v2/write``, so influxdb-client cannot write to it: there only ``writer`` and
``record`` run, and their ratios are taken against ``WriteApi`` into VictoriaMetrics. Beside
it: the event-loop CPU time to make one 5000-line request body (a request waits that long),
and the cost of the request-path ``append`` against a closure that would also check the
length.

Memory: a fresh process runs a ``Writer`` (default settings) against a port where nothing
listens, appending ``--outage-rate`` realistic request points/s (``gzip_ratio.realistic``: a
random uuid4 ``request_id``, full-precision ``execution_time``) for ``--outage-s`` seconds;
RSS growth is measured from the first second on and divided by the points buffered since.
Beside it: the event-loop CPU time per line to pack the buffer's tail into zlib blocks and
to unpack them.

    python bench/writer.py [--points 200000] [--rounds 5] [--outage-s 30]
                           [--mode all|throughput|outage]
                           [--variants 'record,writer,WriteApi(dict),WriteApi(line)']
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from timeit import repeat, timeit
from typing import Any

from gzip_ratio import realistic
from influxdb_client import InfluxDBClient, WriteOptions
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from luna_monitoring.core.buffer import Buffer
from luna_monitoring.core.point import LineEncoder, Point
from luna_monitoring.core.runtime import Monitoring, instance_offset, worker_clock
from luna_monitoring.core.settings import Settings
from luna_monitoring.core.writer import Writer
from luna_monitoring.storages import make_storage
from luna_monitoring.storages.clickhouse_rows import RowEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import ClickHouse, InfluxDB1, VictoriaMetrics, free_port, unique_name

BENCH_CPU, DB_CPU = 0, 1
CHUNK = 1000
TAGS = {"service": "luna-remote-sdk", "route": "POST:/sdk", "status_code": "200"}


def make_points(series: str, start: int, count: int, base_ns: int) -> list[Point]:
    """``count`` request-like points numbered from ``start``."""
    return [
        Point(
            series,
            base_ns + i * 1000,
            TAGS,
            {"request_id": f"1700000000,{i:036d}", "execution_time": 0.0123 + i % 97 / 1e4},
        )
        for i in range(start, start + count)
    ]


class Pinned:
    """Mixin: run the server process on ``DB_CPU``."""

    def _command(self) -> list[str]:
        return ["taskset", "-c", str(DB_CPU), *super()._command()]


class PinnedVictoria(Pinned, VictoriaMetrics):
    pass


class PinnedInflux(Pinned, InfluxDB1):
    pass


class PinnedClickHouse(Pinned, ClickHouse):
    pass


class WriteApiAsyncStorage:
    """influxdb-client's ``WriteApiAsync`` with ``enable_gzip=True`` as a ``Storage``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: InfluxDBClientAsync | None = None

    async def write(self, body: bytes) -> None:
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self._settings.url, token="t", org="o", enable_gzip=True
            )
        await self._client.write_api().write(bucket="b", org="o", record=body)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


async def _produce(writer: Writer, n: int, chunk: Callable[[int, int], None]) -> None:
    """``chunk(start, base_ns)`` makes ``CHUNK`` points from ``start``, ``n`` in all, with
    backpressure: the loop runs between chunks."""
    base_ns = time.time_ns()
    high_water = 4 * writer.settings.batch_size
    produced = 0
    while produced < n:
        if writer.stats["points_buffered"] > high_water:
            await asyncio.sleep(0.001)
            continue
        chunk(produced, base_ns)
        produced += CHUNK
        await asyncio.sleep(0)


def appending(writer: Writer, series: str) -> Callable[[int, int], None]:
    """Chunks of ready points appended to ``writer``, as the request hooks append them."""

    def chunk(start: int, base_ns: int) -> None:
        for point in make_points(series, start, CHUNK, base_ns):
            writer.append(point)

    return chunk


def recording(monitoring: Monitoring, series: str) -> Callable[[int, int], None]:
    """What a service does: ``record()`` with its own tags and fields for every point."""
    record = monitoring.record

    def chunk(start: int, base_ns: int) -> None:
        for i in range(start, start + CHUNK):
            record(
                series,
                tags={"route": "POST:/sdk", "status_code": "200"},
                fields={
                    "request_id": f"1700000000,{i:036d}",
                    "execution_time": 0.0123 + i % 97 / 1e4,
                },
                time_ns=base_ns + i * 1000,
            )

    return chunk


Timing = tuple[float, float]
"""Wall-clock seconds and this process's CPU seconds (all threads) of one delivery."""


def run_writer(
    settings: Settings, series: str, n: int, async_api: bool = False, via_record: bool = False
) -> Timing:
    """Seconds to deliver ``n`` points with ``Writer`` (through ``Monitoring.record`` if
    ``via_record``)."""

    async def main() -> Timing:
        storage = WriteApiAsyncStorage(settings) if async_api else make_storage(settings)
        writer = Writer(settings, storage)
        await writer.start()
        began, cpu = time.perf_counter(), time.process_time()
        if via_record:
            clock = worker_clock(offset=instance_offset(settings.instance_offset))
            chunk = recording(Monitoring(settings, writer, clock), series)
        else:
            chunk = appending(writer, series)
        await _produce(writer, n, chunk)
        assert await writer.flush()
        timing = time.perf_counter() - began, time.process_time() - cpu
        await writer.stop()
        assert writer.stats["points_written"] == n, writer.stats
        assert getattr(writer._buffer, "packs", 0) == 0, "a writer that keeps up packed"
        return timing

    return asyncio.run(main())


def run_write_api(url: str, series: str, n: int, as_lines: bool) -> Timing:
    """Seconds to deliver ``n`` points with influxdb-client's batching ``WriteApi``."""
    base_ns = time.time_ns()
    encoder = LineEncoder()
    options = WriteOptions(batch_size=5000, flush_interval=1000)
    with InfluxDBClient(url=url, token="t", org="o", enable_gzip=True) as client:
        write_api = client.write_api(write_options=options)
        began, cpu = time.perf_counter(), time.process_time()
        for start in range(0, n, CHUNK):
            points = make_points(series, start, CHUNK, base_ns)
            if as_lines:
                records: list[Any] = encoder.encode_lines(points)
            else:
                records = [
                    {"measurement": p.series, "tags": p.tags, "fields": p.fields, "time": p.time_ns}
                    for p in points
                ]
            write_api.write(bucket="b", record=records)
        write_api.close()
        return time.perf_counter() - began, time.process_time() - cpu


RECORDED = {
    "tags": ["route", "status_code"],
    "fields": {"request_id": "str", "execution_time": "float"},
}
"""The custom series ``record`` declares: the request point's tags and fields."""


def throughput(n: int, rounds: int, only: list[str]) -> dict[str, dict[str, list[Timing]]]:
    """Timings of every variant (of those ``only`` names, if given) on every database,
    alternating, ``rounds`` times."""
    results: dict[str, dict[str, list[Timing]]] = {
        "VictoriaMetrics": {},
        "InfluxDB 1.6": {},
        "ClickHouse 18.16": {},
    }
    with PinnedVictoria() as vm, PinnedInflux() as influx, PinnedClickHouse() as clickhouse:
        influx.create_database("bench")
        v2_config = {"port": vm.port, "token": "t", "organization": "o", "gzip": True}
        v1_config = {"version": 1, "port": influx.port, "database": "bench", "gzip": True}
        v2, v1 = Settings.from_config(v2_config), Settings.from_config(v1_config)

        def declaring(config: dict, series: str) -> Settings:
            return Settings.from_config({**config, "custom_series": {series: RECORDED}})

        def on_vm(run: Callable[[str], Timing]) -> Callable[[], Timing]:
            def variant() -> Timing:
                series = unique_name("bench")
                result = run(series)
                assert vm.count_points(series, "execution_time") == n
                return result

            return variant

        def on_influx(via_record: bool) -> Callable[[], Timing]:
            def variant() -> Timing:
                series = unique_name("bench")
                settings = declaring(v1_config, series) if via_record else v1
                result = run_writer(settings, series, n, via_record=via_record)
                assert influx.count("bench", series) == n
                return result

            return variant

        def on_clickhouse() -> Timing:
            database = unique_name("bench")
            config = {"storage_type": "clickhouse", "port": clickhouse.port, "gzip": True}
            result = run_writer(
                Settings.from_config({**config, "database": database}), "requests", n
            )
            assert clickhouse.count(f"{database}.requests") == n
            clickhouse.query(f"DROP DATABASE {database}")
            return result

        variants: dict[tuple[str, str], Callable[[], Timing]] = {
            ("VictoriaMetrics", "writer"): on_vm(lambda s: run_writer(v2, s, n)),
            ("VictoriaMetrics", "record"): on_vm(
                lambda s: run_writer(declaring(v2_config, s), s, n, via_record=True)
            ),
            ("VictoriaMetrics", "writer+WriteApiAsync"): on_vm(
                lambda s: run_writer(v2, s, n, async_api=True)
            ),
            ("VictoriaMetrics", "WriteApi(dict)"): on_vm(
                lambda s: run_write_api(vm.url, s, n, as_lines=False)
            ),
            ("VictoriaMetrics", "WriteApi(line)"): on_vm(
                lambda s: run_write_api(vm.url, s, n, as_lines=True)
            ),
            ("InfluxDB 1.6", "writer"): on_influx(via_record=False),
            ("InfluxDB 1.6", "record"): on_influx(via_record=True),
            ("ClickHouse 18.16", "writer"): on_clickhouse,
        }
        if only:
            variants = {
                (db, name): run
                for (db, name), run in variants.items()
                if name in only or f"{db}:{name}" in only
            }
        for round_no in range(rounds):
            order = list(variants.items())
            if round_no % 2:
                order.reverse()
            for (db, name), variant in order:
                seconds, cpu = variant()
                results[db].setdefault(name, []).append((seconds, cpu))
                print(
                    f"  round {round_no + 1} {db:16} {name:22} {n / seconds:10,.0f} points/s "
                    f"{cpu / n * 1e6:6.2f} µs CPU/point",
                    flush=True,
                )
    return results


def report_throughput(n: int, results: dict[str, dict[str, list[Timing]]]) -> None:
    """Medians of rates and CPU per point, and the ratios of ``writer`` and ``record`` into
    each database to ``WriteApi`` into VictoriaMetrics (medians of the per-round ratios)."""
    print("medians:")
    for db, variants in results.items():
        for name, timings in variants.items():
            rate = statistics.median(n / seconds for seconds, _ in timings)
            cpu = statistics.median(cpu / n * 1e6 for _, cpu in timings)
            print(f"  {db:16} {name:22} {rate:10,.0f} points/s {cpu:6.2f} µs CPU/point")
    baselines = {
        name: results["VictoriaMetrics"].get(name) for name in ("WriteApi(dict)", "WriteApi(line)")
    }
    print("ratios (median of per-round ratios; WriteApi into VictoriaMetrics in every case):")
    for db, variants in results.items():
        for name in ("writer", "record"):
            ours = variants.get(name)
            for base_name, base in baselines.items():
                if ours and base:
                    ratio = statistics.median(
                        b / o for (o, _), (b, _) in zip(ours, base, strict=True)
                    )
                    print(f"  {name:6} -> {db:16} / {base_name:14} x{ratio:5.2f}")
    clickhouse = results["ClickHouse 18.16"].get("writer")
    influx = results["InfluxDB 1.6"].get("writer")
    if clickhouse and influx:
        ratio = statistics.median(i / c for (c, _), (i, _) in zip(clickhouse, influx, strict=True))
        print(
            f"  ClickHouse / InfluxDB 1.6 with Writer: x{ratio:4.2f} (median of per-round ratios)"
        )


def outage_child(seconds: float, rate: int) -> None:
    """Run in a fresh process: RSS growth of a Writer whose database is unreachable."""

    def rss_mib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    async def main() -> dict:
        # Defaults but for the shutdown bound, which only shortens the end of the run.
        settings = Settings.from_config(
            {"version": 1, "port": free_port(), "shutdown_timeout_s": 0.1}
        )
        writer = Writer(settings, make_storage(settings))
        await writer.start()
        per_tick = rate // 100
        rng = random.Random(1)
        began = time.monotonic()
        produced, start_rss, start_buffered, peak = 0, None, 0, 0.0
        while (elapsed := time.monotonic() - began) < seconds:
            for point in realistic(per_tick, rng):
                writer.append(point)
            produced += per_tick
            if start_rss is None and elapsed >= 1.0:
                start_rss, start_buffered = rss_mib(), len(writer._buffer)
            peak = max(peak, rss_mib())
            await asyncio.sleep(max(0.0, began + produced / rate - time.monotonic()))
        stats = writer.stats
        packs = getattr(writer._buffer, "packs", 0)
        await writer.stop()
        return {
            "start_mib": start_rss,
            "start_buffered": start_buffered,
            "peak_mib": peak,
            "produced": produced,
            "packs": packs,
            **stats,
        }

    print(json.dumps(asyncio.run(main())))


def outage(seconds: float, rate: int) -> dict:
    """:func:`outage_child` in a fresh interpreter pinned to ``BENCH_CPU``."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(BENCH_CPU),
            sys.executable,
            __file__,
            "--outage-child",
            "--outage-s",
            str(seconds),
            "--outage-rate",
            str(rate),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def append_cost_ns() -> dict[str, float]:
    """ns per call: the bound ``deque.append`` against a closure that also checks the length."""
    buffer: deque = deque()
    bound = buffer.append
    limit = 5000
    wake: list[int] = []

    def checking(point: object) -> None:
        bound(point)
        if len(buffer) >= limit:
            wake.append(1)

    point = make_points("m", 0, 1, 0)[0]
    costs = {}
    for name, fn in (("deque.append", bound), ("closure+len check", checking)):
        runs = []
        for _ in range(5):
            buffer.clear()
            runs.append(timeit(lambda fn=fn: fn(point), number=200_000) / 200_000 * 1e9)
        costs[name] = min(runs)
    return costs


def encode_cost_us(n: int = 5000, rounds: int = 5) -> dict[str, float]:
    """CPU µs per request point to encode a batch: line protocol against JSONEachRow rows."""
    points = make_points("requests", 0, n, time.time_ns())
    encoders = {"LineEncoder (InfluxDB)": LineEncoder(), "RowEncoder (ClickHouse)": RowEncoder()}
    return {
        name: min(repeat(lambda e=encoder: e.encode_lines(points), number=1, repeat=rounds))
        / n
        * 1e6
        for name, encoder in encoders.items()
    }


def batch_loop_cost_ms(batch_size: int = 5000) -> dict[str, float]:
    """ms of event-loop CPU to turn one full batch of buffered lines into a request body."""
    buffer = Buffer(batch_size)
    buffer.add(make_points("requests", 0, batch_size, time.time_ns()))

    def body() -> bytes:
        data, _ = buffer.begin(batch_size)
        buffer.keep()
        return data

    variants = {
        "writer (gzip in a thread)": body,
        "WriteApiAsync enable_gzip=True": lambda: gzip.compress(body()),
    }
    return {name: min(repeat(fn, number=5, repeat=5)) / 5 * 1e3 for name, fn in variants.items()}


def pack_cost_us(n: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """CPU µs per realistic line to pack the tail into blocks, and to make a body of them
    (``begin``) from blocks and from lines never packed."""
    points = realistic(n, random.Random(1))
    costs: dict[str, list[float]] = {"pack": [], "begin from blocks": [], "begin from lines": []}
    for _ in range(rounds):
        for packed in (True, False):
            buffer = Buffer(2 * n, pack_after=2 * n)
            buffer.add(points)
            if packed:
                buffer.pack_after = 0
                began = time.process_time()
                buffer.add([])  # packs the whole tail
                costs["pack"].append(time.process_time() - began)
            began = time.process_time()
            buffer.begin(n)
            costs["begin from blocks" if packed else "begin from lines"].append(
                time.process_time() - began
            )
    return {name: min(runs) / n * 1e6 for name, runs in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--outage-rate", type=int, default=5000)
    parser.add_argument("--mode", choices=("all", "throughput", "outage"), default="all")
    parser.add_argument(
        "--variants", default="", help="comma-separated variant names: run only those"
    )
    parser.add_argument("--outage-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.outage_child:
        outage_child(args.outage_s, args.outage_rate)
        return
    os.sched_setaffinity(0, {BENCH_CPU})
    if args.mode != "outage":
        run_throughput(args)
    if args.mode != "throughput":
        run_outage(args)


def run_throughput(args: argparse.Namespace) -> None:

    print("request-path append, ns per call:")
    for name, cost in append_cost_ns().items():
        print(f"  {name:20} {cost:6.1f}")

    print("encoding, µs per request point (batches of 5000):")
    for name, cost in encode_cost_us().items():
        print(f"  {name:24} {cost:6.2f}")

    print("event-loop CPU per 5000-line batch, ms:")
    for name, cost in batch_loop_cost_ms().items():
        print(f"  {name:32} {cost:6.1f}")

    print(f"throughput, {args.points:,} points, {args.rounds} alternating rounds:")
    only = [word for word in args.variants.split(",") if word]
    report_throughput(args.points, throughput(args.points, args.rounds, only))


def run_outage(args: argparse.Namespace) -> None:
    if hasattr(Buffer(1), "packs"):
        print("packing the buffer's tail, CPU µs per realistic line:")
        for name, cost in pack_cost_us().items():
            print(f"  {name:18} {cost:5.2f}")
    print(f"outage: {args.outage_rate} realistic points/s for {args.outage_s:g} s, defaults:")
    memory = outage(args.outage_s, args.outage_rate)
    growth = memory["peak_mib"] - memory["start_mib"]
    per_point = growth * 2**20 / (memory["points_buffered"] - memory["start_buffered"])
    print(
        f"  RSS {memory['start_mib']:.1f} MiB at 1 s ({memory['start_buffered']:,} buffered), "
        f"peak {memory['peak_mib']:.1f} MiB: growth {growth:.1f} MiB, {per_point:.0f} bytes "
        f"per point buffered since; {memory['produced']:,} points, "
        f"{memory['points_buffered']:,} buffered, {memory['points_dropped']:,} dropped, "
        f"{memory['packs']:,} blocks packed"
    )


if __name__ == "__main__":
    main()
