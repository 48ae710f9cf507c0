"""Request overhead of MonitoringExtension (Sanic) and setup_monitoring (aiohttp): wrk
against a hello world, with and without.

Every variant is the same single-process app (``GET /`` -> ``text("hello")``, access log
off) set up with the same ``app.extend(built_in_extensions=False, ...)`` call; they differ
only in monitoring:

* ``bare``: no monitoring (the baseline).
* ``monitored``: ``MonitoringExtension`` delivering to a local InfluxDB 1.x.
* ``excluded``: ``MonitoringExtension`` with ``excluded_routes: [".*"]``: request ids and the
  header, no points (what the request hooks cost before any point is made).
* ``spooled``: ``monitored`` with a disk spool (``spool_dir`` in a temporary directory; the
  database is up, so the spool stays empty: what it costs to have one).
* ``gzip``: ``monitored`` with ``gzip: True`` (the default, ``"auto"``, does not compress
  for a loopback database).
* ``header``: no monitoring; the handler sets a fixed ``LUNA-Request-Id`` header on its
  response: what Sanic itself spends on one such header, a floor for any monitoring that
  must send it.
* ``naive``: two ``async`` middlewares that make a request id with ``uuid4``, set the
  header, build an ``influxdb_client.Point`` per request and buffer its line (sent to the
  same InfluxDB every second).
* ``bare+builtins`` / ``monitored+builtins``: as above with sanic-ext's built-in extensions
  (what ``AUTO_EXTEND`` or a plain ``app.extend(extensions=[...])`` loads).

The estimation-heavy pair serves ``GET /`` with a handler that does what an SDK handler
records, its own work left out: two image loads, ten estimations (one with five fields set)
and two usage counts, then ``text("hello")``; its ratios are taken against
``estimation-bare`` of the same round:

* ``estimation-bare``: the same handler without monitoring (the blocks around nothing);
* ``estimation-monitored``: ``MonitoringExtension`` and ``@monitored_estimation``: 15 points
  a request (``requests``, ``sdkloop_task``, 2 ``image_load``, 10 estimator points,
  ``usages_statistic``) delivered to the local InfluxDB 1.x.

The aiohttp pair is the same hello world as an ``aiohttp.web.Application`` served by
``web.run_app`` (access log off), its ratios taken against ``aiohttp-bare`` of the same round:

* ``aiohttp-bare``: no monitoring (the aiohttp baseline).
* ``aiohttp-monitored``: ``setup_monitoring`` delivering to the local InfluxDB 1.x.
* ``aiohttp-excluded``: ``setup_monitoring`` with ``excluded_routes: [".*"]``: request ids
  and the header, no points.
* ``aiohttp-header``: no monitoring; the handler sets the fixed ``LUNA-Request-Id`` header.
* ``aiohttp-middleware`` / ``aiohttp-signal``: no monitoring; an empty middleware
  (``return await handler(request)``) or an empty ``on_response_prepare`` receiver: the
  floor of the hooks the adapter could have used instead of its request class.

The app runs pinned to CPU 0 (``taskset -c 0``), wrk and InfluxDB to CPU 1. Each round runs
every variant once, in a rotated order, for ``--seconds`` after a 1 s warm-up; the figures are
medians over the rounds of per-round ratios against ``bare``. CPU per request is the app
process's utime + stime (``/proc/<pid>/stat``, background delivery included) over the
requests wrk completed; on a machine shared with other work it is the steadier figure.
After each monitored run the app is stopped with SIGINT (graceful: the last points are
flushed) and the ``requests`` points in its database are counted; there are a few more than
wrk counted, as wrk does not count the requests still in flight when its time is up.

With ``--paired`` each variant instead runs at the same time as a bare app, both on CPU 0,
each loaded by its own wrk: the two share the core and whatever else the machine does in
those seconds, so their difference in CPU per request is steadier than between runs one
after the other (the core's caches are shared too, which makes every cost a little higher).

With ``--wrk-first`` wrk runs ahead of InfluxDB on CPU 1 (``load.put_wrk_first``): a
monitored hello world no longer waits for requests while InfluxDB takes a write (``busy``
nearer 1), but InfluxDB then falls behind the estimation-heavy app, which packs the
points waiting for it.

With ``--against DIR`` (a checkout of another commit, e.g. made with ``git worktree add
--detach DIR REF``) every monitored variant also runs as ``VARIANT@before``, its app importing
``luna_monitoring`` from ``DIR``: the same app, the package before and after, alternating in
one run.

    python bench/overhead.py [--rounds 3] [--seconds 5] [--connections 32] [--paired]
                             [--variants ...] [--against DIR] [--wrk-first]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from estimation import record_request  # noqa: E402
from load import (  # noqa: E402
    APP_CPU,
    LOAD_CPU,
    TICKS_PER_S,
    cpu_ticks,
    parse_or_serve,
    put_wrk_first,
    wrk,
)
from servers import InfluxDB1, free_port, http_request, unique_name, wait_until  # noqa: E402

VARIANTS = (
    "bare",
    "monitored",
    "spooled",
    "excluded",
    "gzip",
    "header",
    "naive",
    "bare+builtins",
    "monitored+builtins",
    "aiohttp-bare",
    "aiohttp-monitored",
    "aiohttp-excluded",
    "aiohttp-header",
    "aiohttp-middleware",
    "aiohttp-signal",
    "estimation-bare",
    "estimation-monitored",
)
AIOHTTP = "aiohttp-"
ESTIMATION = "estimation-"


BEFORE = "@before"


def baseline(variant: str) -> str:
    """The variant whose ratios ``variant`` is measured against: the bare app of its kind."""
    for prefix in (AIOHTTP, ESTIMATION):
        if variant.startswith(prefix):
            return f"{prefix}bare"
    return "bare"


FIXED_ID = "1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427"


# -- the app (``--serve``) ------------------------------------------------------------


def serve(variant: str, port: int, influx_port: int, database: str) -> None:
    """Run the app of ``variant`` in this process until SIGINT."""
    if variant.startswith(AIOHTTP):
        serve_aiohttp(variant.removeprefix(AIOHTTP), port, influx_port, database)
        return
    if variant.startswith(ESTIMATION):
        serve_estimation(variant == f"{ESTIMATION}monitored", port, influx_port, database)
        return
    from sanic import Sanic, text

    from luna_monitoring import MonitoringExtension

    monitoring, _, builtins = variant.partition("+")
    app = Sanic(f"bench_{monitoring}")
    app.config.MONITORING = {"version": 1, "port": influx_port, "database": database}
    if monitoring == "excluded":
        app.config.MONITORING["excluded_routes"] = [".*"]
    elif monitoring == "gzip":
        app.config.MONITORING["gzip"] = True
    elif monitoring == "spooled":
        app.config.MONITORING["spool_dir"] = tempfile.mkdtemp(prefix="bench-spool-")
    monitored = monitoring in ("monitored", "spooled", "excluded", "gzip")
    extensions = [MonitoringExtension] if monitored else []
    app.extend(extensions=extensions, built_in_extensions=bool(builtins))
    if monitoring == "naive":
        _add_naive_monitoring(app, f"http://127.0.0.1:{influx_port}/write?db={database}")

    headers = {"LUNA-Request-Id": FIXED_ID} if monitoring == "header" else None

    @app.get("/")
    async def hello(request):
        return text("hello", headers=headers)

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def serve_aiohttp(variant: str, port: int, influx_port: int, database: str) -> None:
    """Run the aiohttp app of ``variant`` (without its prefix) until SIGINT."""
    from aiohttp import web

    from luna_monitoring.aiohttp import setup_monitoring

    headers = {"LUNA-Request-Id": FIXED_ID} if variant == "header" else None

    async def hello(request):
        return web.Response(text="hello", headers=headers)

    @web.middleware
    async def nothing(request, handler):
        return await handler(request)

    async def on_prepare(request, response):
        pass

    app = web.Application(middlewares=[nothing] if variant == "middleware" else [])
    app.router.add_get("/", hello)
    if variant == "signal":
        app.on_response_prepare.append(on_prepare)
    if variant in ("monitored", "excluded"):
        config = {"version": 1, "port": influx_port, "database": database}
        if variant == "excluded":
            config["excluded_routes"] = [".*"]
        setup_monitoring(app, config)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_estimation(monitored: bool, port: int, influx_port: int, database: str) -> None:
    """Run the estimation-heavy app (monitored or not) until SIGINT."""
    from contextlib import nullcontext

    from sanic import Sanic, text

    from luna_monitoring import MonitoringExtension, current_collector, monitored_estimation

    app = Sanic("bench_estimation")
    app.config.MONITORING = {"version": 1, "port": influx_port, "database": database}
    app.extend(extensions=[MonitoringExtension] if monitored else [], built_in_extensions=False)

    class Unmonitored:
        """What the handler calls when nothing is monitored: blocks around nothing."""

        def image_load(self, **tags):
            return nullcontext(self)

        def estimation(self, series, **tags):
            return nullcontext(self)

        def set(self, **fields):
            pass

        def add_usage(self, estimator, count=1):
            pass

    unmonitored = Unmonitored()

    async def estimate(request):
        record_request(current_collector() if monitored else unmonitored)
        return text("hello")

    app.get("/")(monitored_estimation(estimate) if monitored else estimate)
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def _add_naive_monitoring(app, write_url: str) -> None:
    """The straightforward way: async middlewares, uuid4, influxdb_client.Point per request."""
    import asyncio
    import uuid
    from collections import deque

    import aiohttp
    from influxdb_client import Point

    lines: deque[str] = deque()

    @app.on_request
    async def start(request):
        request.ctx.start = time.perf_counter()
        request.ctx.time_ns = time.time_ns()
        request.ctx.request_id = f"{int(time.time())},{uuid.uuid4()}"

    @app.on_response
    async def finish(request, response):
        response.headers["LUNA-Request-Id"] = request.ctx.request_id
        point = (
            Point("requests")
            .tag("service", "luna-remote-sdk")
            .tag("route", f"{request.method}:{request.uri_template}")
            .tag("status_code", str(response.status))
            .field("request_id", request.ctx.request_id)
            .field("execution_time", time.perf_counter() - request.ctx.start)
            .time(request.ctx.time_ns)
        )
        lines.append(point.to_line_protocol())

    async def flush(session) -> None:
        batch = [lines.popleft() for _ in range(len(lines))]
        if batch:
            await session.post(write_url, data="\n".join(batch).encode())

    async def loop(app):
        async with aiohttp.ClientSession() as session:
            try:
                while True:
                    await asyncio.sleep(1.0)
                    await flush(session)
            except asyncio.CancelledError:
                await flush(session)

    @app.after_server_start
    async def start_flushing(app):
        app.ctx.naive_flush = asyncio.get_running_loop().create_task(loop(app))

    @app.before_server_stop
    async def stop_flushing(app):
        app.ctx.naive_flush.cancel()
        await asyncio.gather(app.ctx.naive_flush, return_exceptions=True)


# -- the driver -----------------------------------------------------------------------


def run_together(
    variants: list[str], influx: InfluxDB1, seconds: int, connections: int, against: str = ""
) -> list:
    """Start the apps of ``variants`` (all on APP_CPU; a ``VARIANT@before`` one importing the
    package from ``against``), load them at the same time (one wrk each), stop them; per
    app: throughput, CPU per request and points delivered."""
    apps = []
    try:
        for variant in variants:
            port, database = free_port(), unique_name("bench")
            influx.create_database(database)
            before = variant.endswith(BEFORE)
            env = {**os.environ, "PYTHONPATH": against} if before else None
            process = subprocess.Popen(
                ["taskset", "-c", str(APP_CPU), sys.executable, __file__, "--serve",
                 variant.removesuffix(BEFORE), str(port), str(influx.port), database],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            apps.append((variant, process, port, database))
        for _, _, port, _ in apps:
            wait_until(lambda port=port: http_request("GET", f"http://127.0.0.1:{port}/").status
                       == 200, timeout=30, ignore=(OSError,))  # fmt: skip
        with ThreadPoolExecutor(len(apps)) as pool:
            warm = list(pool.map(lambda app: 1 + wrk(app[2], 1, connections), apps))
            ticks = [cpu_ticks(process.pid) for _, process, _, _ in apps]
            began = time.monotonic()
            done = list(pool.map(lambda app: wrk(app[2], seconds, connections), apps))
            elapsed = time.monotonic() - began
            after = [cpu_ticks(process.pid) for _, process, _, _ in apps]
            cpu_s = [(b - a) / TICKS_PER_S for a, b in zip(ticks, after, strict=True)]
    finally:
        for _, process, _, _ in apps:
            process.send_signal(signal.SIGINT)
        for _, process, _, _ in apps:
            process.wait(30)
    results = []
    for (variant, _, _, database), sent, requests, cpu in zip(apps, warm, done, cpu_s, strict=True):
        kind = variant.removeprefix(AIOHTTP).removeprefix(ESTIMATION)
        delivers = kind.startswith(("monitored", "spooled", "gzip"))
        results.append(
            {
                "rps": requests / elapsed,
                "cpu_us": cpu / requests * 1e6,
                "sent": sent + requests,
                "stored": influx.count(database, "requests") if delivers else None,
            }
        )
        influx.drop_database(database)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument(
        "--paired", action="store_true", help="run each variant at the same time as bare"
    )
    parser.add_argument("--against", metavar="DIR", help="also run the package found in DIR")
    parser.add_argument(
        "--wrk-first", action="store_true", help="run wrk ahead of InfluxDB on their core"
    )
    args = parse_or_serve(parser, serve)
    if args is None:
        return
    if any(baseline(variant) not in args.variants for variant in args.variants):
        parser.error(
            "the variants must include their baseline: bare, aiohttp-bare or estimation-bare"
        )
    os.sched_setaffinity(0, {LOAD_CPU})  # InfluxDB (a child) runs beside wrk
    others = [variant for variant in args.variants if baseline(variant) != variant]
    if args.against:
        others += [f"{variant}{BEFORE}" for variant in others if "monitored" in variant]
        args.variants = [*args.variants, *(v for v in others if v.endswith(BEFORE))]
    pairs: dict[str, list[tuple[dict, dict]]] = {variant: [] for variant in args.variants}
    with InfluxDB1() as influx:
        if args.wrk_first:
            put_wrk_first(influx.pid)
        for round_ in range(args.rounds):
            if args.paired:
                for variant in others[round_ % len(others) :] + others[: round_ % len(others)]:
                    base_variant = baseline(variant)
                    run, base = run_together([variant, base_variant], influx, args.seconds,
                                             args.connections, args.against)  # fmt: skip
                    pairs[variant].append((run, base))
                    pairs[base_variant].append((base, base))
                    print(f"round {round_ + 1} {variant:20} {json.dumps(run)} {base_variant} "
                          f"{json.dumps(base)}", flush=True)  # fmt: skip
                continue
            shift = round_ % len(args.variants)
            runs = {}
            for variant in args.variants[shift:] + args.variants[:shift]:
                [runs[variant]] = run_together(
                    [variant], influx, args.seconds, args.connections, args.against
                )
                print(f"round {round_ + 1} {variant:20} {json.dumps(runs[variant])}", flush=True)
            for variant, run in runs.items():
                pairs[variant].append((run, runs[baseline(variant)]))
    report(pairs)


def report(pairs: dict[str, list[tuple[dict, dict]]]) -> None:
    """Medians over rounds of: throughput and its ratio to bare; CPU per request, the ratio
    it implies (bare CPU / variant CPU: the app's core is saturated, so throughput follows
    it, and it does not swing with other load on the machine as throughput does) and the
    CPU added to bare; the share of its core the app kept busy (alone: below 1 when it
    waited for wrk; ``--paired``: its half of the shared core); points stored / requests
    sent. Each run is paired with the bare run of its framework in its round (``--paired``:
    the bare app that ran beside it)."""

    def median(values) -> float:
        return statistics.median(list(values))

    print(
        f"\n{'variant':20} {'req/s':>7} {'ratio':>6} {'CPU µs/req':>10} {'CPU ratio':>9} "
        f"{'added µs':>8} {'busy':>5}  stored/sent"
    )
    for variant, runs in pairs.items():
        stored = ", ".join(f"{r['stored']}/{r['sent']}" for r, _ in runs if r["stored"] is not None)
        print(
            f"{variant:20} {median(r['rps'] for r, _ in runs):7.0f} "
            f"{median(r['rps'] / b['rps'] for r, b in runs):6.3f} "
            f"{median(r['cpu_us'] for r, _ in runs):10.2f} "
            f"{median(b['cpu_us'] / r['cpu_us'] for r, b in runs):9.3f} "
            f"{median(r['cpu_us'] - b['cpu_us'] for r, b in runs):8.2f} "
            f"{median(r['rps'] * r['cpu_us'] / 1e6 for r, _ in runs):5.3f}  {stored}"
        )


if __name__ == "__main__":
    main()
