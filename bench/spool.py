"""The disk spool: the append bound's cost, spool and replay rates, bytes per point, and what
draining a big spool does to requests.

* ``append``: ``Buffer.append`` (a length check, then ``deque.append``) against the bare
  ``deque.append`` the request path used before the bound held on every append; request
  point tuples in simulated ticks of 5,000, thread CPU time, alternating rounds.
* ``spool``: ``Spool.write`` of encoded request lines in spills of 500 (a tick's worth),
  per ``spool_fsync`` policy: points/s, and segment bytes per point against the line's bytes.
* ``read``: ``Replay`` reading the same spool back (fill, begin, settle), no network.
* ``replay``: a ``Writer`` writing a spool of ``--points`` back into InfluxDB 1.6, at the
  default ``spool_replay_points_per_s`` and unlimited.
* ``drain``: two hello-world Sanic apps at the same time on CPU 0 (wrk and InfluxDB on
  CPU 1), each under its own wrk: one whose spool holds ``--drain-points`` when it starts
  (drained at the default rate, at 50,000/s, unlimited), one whose spool is empty. Their
  req/s and p99 latency while it drains; pairing cancels the machine's other load.

    python bench/spool.py [--rounds 5] [--points 200000] [--drain-points 400000] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from load import APP_CPU, LOAD_CPU, wrk_output  # noqa: E402
from servers import InfluxDB1, free_port, http_request, unique_name, wait_until  # noqa: E402

from luna_monitoring.core.buffer import Buffer  # noqa: E402
from luna_monitoring.core.point import LineEncoder  # noqa: E402
from luna_monitoring.core.replay import Replay  # noqa: E402
from luna_monitoring.core.settings import Settings  # noqa: E402
from luna_monitoring.core.spool import Spool  # noqa: E402
from luna_monitoring.core.writer import Writer  # noqa: E402
from luna_monitoring.storages import make_storage  # noqa: E402

SERVICE = "luna-remote-sdk"
TAGS = {"service": SERVICE, "route": "POST:/sdk", "status_code": "200"}


def request_points(n: int, start_ns: int) -> list[tuple]:
    return [
        ("requests", start_ns + i, TAGS, {"request_id": f"1700000000,{uuid.uuid4()}",
                                          "execution_time": 0.0123 + i * 1e-9})
        for i in range(n)
    ]  # fmt: skip


def request_lines(n: int) -> list[str]:
    return LineEncoder().encode_lines(request_points(n, time.time_ns() - n * 1000))


# -- append -------------------------------------------------------------------------


def bench_append(rounds: int, calls: int = 500_000) -> None:
    points = request_points(5000, 1)

    def run(append, drain) -> float:
        """ns per append, the drain of each tick of 5000 included."""
        began = time.thread_time_ns()
        for _ in range(calls // 5000):
            for point in points:
                append(point)
            drain()
        return (time.thread_time_ns() - began) / calls

    plain: deque = deque()
    buffer = Buffer(100_000)

    def take_plain() -> list:  # as Buffer.take
        pop = plain.popleft
        return [pop() for _ in range(min(5000, len(plain)))]

    results: dict[str, list[float]] = {"deque.append": [], "Buffer.append": []}
    for _ in range(rounds):
        results["deque.append"].append(run(plain.append, take_plain))
        results["Buffer.append"].append(run(buffer.append, lambda: buffer.take(5000)))
    base = statistics.median(results["deque.append"])
    print("\nappend, ns per call (median of rounds):")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:14} {median:6.1f} ns  (+{median - base:.1f})")


# -- spool and read -----------------------------------------------------------------


def bench_spool(points: int, rounds: int) -> None:
    lines = request_lines(points)
    line_bytes = sum(len(line.encode()) + 1 for line in lines)
    print(f"\nspool write ({points} request lines, {line_bytes / points:.1f} bytes per line):")
    for policy in ("never", "interval", "always"):
        rates, reads = [], []
        for _ in range(rounds):
            directory = tempfile.mkdtemp(prefix="bench-spool-")
            try:
                spool = Spool.open(directory, SERVICE, 0, 1 << 34, policy)
                began = time.perf_counter()
                for start in range(0, points, 500):
                    spool.write(lines[start : start + 500])
                spool.sync()
                rates.append(points / (time.perf_counter() - began))
                size = spool.bytes
                replay = Replay(spool)
                began = time.perf_counter()
                read = 0
                while True:
                    replay.fill(5000)
                    if not replay.lines:
                        break
                    _, count = replay.begin(5000)
                    replay.settle(count)
                    read += count
                assert read == points
                reads.append(points / (time.perf_counter() - began))
                spool.close()
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        print(f"  fsync {policy:9} write {statistics.median(rates):10,.0f} points/s, read back "
              f"{statistics.median(reads):10,.0f} points/s, {size / points:.1f} bytes per "
              f"point on disk")  # fmt: skip


# -- replay into InfluxDB -----------------------------------------------------------


async def _replay_once(influx: InfluxDB1, lines: list[str], rate: float) -> float:
    directory = tempfile.mkdtemp(prefix="bench-spool-")
    database = unique_name("bench")
    influx.create_database(database)
    try:
        spool = Spool.open(directory, SERVICE, 0, 1 << 34, "never")
        for start in range(0, len(lines), 1000):
            spool.write(lines[start : start + 1000])
        spool.close()
        settings = Settings.from_config({
            "version": 1, "port": influx.port, "database": database, "spool_dir": directory,
            "spool_replay_points_per_s": rate,
        })  # fmt: skip
        writer = Writer(settings, make_storage(settings))
        began = time.perf_counter()
        await writer.start()
        while writer.stats["points_replayed"] < len(lines):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - began
        await writer.stop()
        assert influx.count(database, "requests") == len(lines)
        return len(lines) / elapsed
    finally:
        influx.drop_database(database)
        shutil.rmtree(directory, ignore_errors=True)


def bench_replay(influx: InfluxDB1, points: int, rounds: int) -> None:
    lines = request_lines(points)
    default = Settings().spool_replay_points_per_s
    results: dict[str, list[float]] = {f"rate {default:,.0f}/s (default)": [], "unlimited": []}
    for _ in range(rounds):
        for name, rate in zip(results, (default, 1e12), strict=True):
            results[name].append(asyncio.run(_replay_once(influx, lines, rate)))
    print(f"\nreplay of {points} spooled points into InfluxDB 1.6 (stored and counted):")
    for name, values in results.items():
        print(f"  {name:24} {statistics.median(values):10,.0f} points/s")


# -- drain vs requests --------------------------------------------------------------


def serve(port: int, config: str) -> None:
    """A hello-world app with MonitoringExtension configured by the JSON ``config``."""
    from sanic import Sanic, text

    from luna_monitoring import MonitoringExtension

    app = Sanic("bench_drain")
    app.config.MONITORING = json.loads(config)
    app.extend(extensions=[MonitoringExtension], built_in_extensions=False)

    @app.get("/")
    async def hello(request):
        return text("hello")

    @app.get("/stats")
    async def stats(request):
        return text(json.dumps(request.app.ctx.monitoring.stats))

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def _wrk(port: int, seconds: int) -> tuple[float, float]:
    """Requests/s and the 99th percentile latency in ms."""
    out = wrk_output(port, seconds, 32, "--latency")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rps, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _start_app(influx: InfluxDB1, lines: list[str], rate: float | None) -> tuple:
    """An app on APP_CPU whose spool holds ``lines`` (none if ``rate`` is None)."""
    directory = tempfile.mkdtemp(prefix="bench-spool-")
    database = unique_name("bench")
    influx.create_database(database)
    if rate is not None:
        spool = Spool.open(directory, SERVICE, 0, 1 << 34, "never")
        for start in range(0, len(lines), 1000):
            spool.write(lines[start : start + 1000])
        spool.close()
    config = {"version": 1, "port": influx.port, "database": database, "spool_dir": directory,
              "spool_replay_points_per_s": rate or 1.0}  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        ["taskset", "-c", str(APP_CPU), sys.executable, __file__, "--serve", str(port),
         json.dumps(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return process, port, database, directory


def _drain_pair(influx: InfluxDB1, lines: list[str], rate: float, seconds: int) -> tuple:
    """An app draining a spool at ``rate`` and one with an empty spool, on the same core at
    the same time, each under its own wrk: ``(draining, empty)`` results."""
    apps = [_start_app(influx, lines, rate), _start_app(influx, lines, None)]
    try:
        for _, port, _, _ in apps:
            url = f"http://127.0.0.1:{port}"
            ready = lambda url=url: http_request("GET", url).status == 200  # noqa: E731
            wait_until(ready, 60, ignore=(OSError,))
        with ThreadPoolExecutor(2) as pool:
            measured = list(pool.map(lambda app: _wrk(app[1], seconds), apps))
        stats = [
            json.loads(http_request("GET", f"http://127.0.0.1:{port}/stats").body)
            for _, port, _, _ in apps
        ]
    finally:
        for process, _, database, directory in apps:
            process.send_signal(signal.SIGINT)
            process.wait(60)
            influx.drop_database(database)
            shutil.rmtree(directory, ignore_errors=True)
    return tuple(
        {"rps": rps, "p99_ms": p99, "replayed_per_s": stat.get("points_replayed", 0) / seconds}
        for (rps, p99), stat in zip(measured, stats, strict=True)
    )


def bench_drain(influx: InfluxDB1, points: int, rounds: int, seconds: int) -> None:
    lines = request_lines(points)
    default = Settings().spool_replay_points_per_s
    rates = {f"at {default:,.0f}/s (default)": default, "at 50,000/s": 50_000.0,
             "unlimited": 1e12}  # fmt: skip
    results: dict[str, list[tuple]] = {name: [] for name in rates}
    for round_ in range(rounds):
        for name, rate in rates.items():
            results[name].append(_drain_pair(influx, lines, rate, seconds))
            print(f"round {round_ + 1} {name:22} {json.dumps(results[name][-1])}", flush=True)
    print(
        f"\nrequests while a spool of {points} points drains, paired with an app whose spool "
        f"is empty (same core, same seconds; wrk, 32 connections, {seconds} s each):"
    )
    print(f"  {'draining':22} {'req/s':>7} {'empty':>7} {'ratio':>6} {'p99 ms':>7} {'empty':>7} "
          f"{'replayed/s':>10}")  # fmt: skip
    for name, runs in results.items():

        def median(values) -> float:
            return statistics.median(list(values))

        print(f"  {name:22} {median(d['rps'] for d, _ in runs):7.0f} "
              f"{median(e['rps'] for _, e in runs):7.0f} "
              f"{median(d['rps'] / e['rps'] for d, e in runs):6.3f} "
              f"{median(d['p99_ms'] for d, _ in runs):7.2f} "
              f"{median(e['p99_ms'] for _, e in runs):7.2f} "
              f"{median(d['replayed_per_s'] for d, _ in runs):10,.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--drain-points", type=int, default=400_000)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--only", choices=("append", "spool", "replay", "drain"))
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "CONFIG"))
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    os.sched_setaffinity(0, {LOAD_CPU})
    if args.only in (None, "append"):
        bench_append(args.rounds)
    if args.only in (None, "spool"):
        bench_spool(args.points, args.rounds)
    if args.only in (None, "replay", "drain"):
        with InfluxDB1() as influx:
            if args.only in (None, "replay"):
                bench_replay(influx, args.points, max(1, args.rounds // 2))
            if args.only in (None, "drain"):
                bench_drain(influx, args.drain_points, max(1, args.rounds // 2), args.seconds)


if __name__ == "__main__":
    main()
