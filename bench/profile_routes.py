"""Where a monitored request's time goes, step by step: cProfile of an ``overhead.py`` app
under wrk load, bare and monitored in the same run.

Each app is one of ``overhead.py``'s variants (``monitored``, ``aiohttp-monitored``,
``estimation-monitored``, ...), served under cProfile in a process of its own pinned to
CPU 0 while wrk (on CPU 1) loads it; its bare baseline runs the same way right before it.
The package's functions are grouped into steps, each counting their own time plus that of the
built-ins they call (``time_ns``, ``os.urandom``, ``deque.append``, ``orjson.dumps``, ...);
the HTTP write counts everything under the storage's ``write`` (the HTTP client included).
The profiler runs only while wrk's measured load runs (after a 1 s warm-up), so start-up and
shutdown are left out. Profiling inflates every Python call, so the absolute figures are
larger than without the profiler: compare the steps with each other and the totals with the
bare app's.

With ``--against DIR`` (a checkout of another commit) each monitored variant is profiled a
second time with ``luna_monitoring`` imported from ``DIR``: where the time went before.

    python bench/profile_routes.py [--variants monitored estimation-monitored]
                                   [--seconds 5] [--connections 32] [--top 0] [--against DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from load import APP_CPU, LOAD_CPU, wrk  # noqa: E402
from overhead import BEFORE, VARIANTS, baseline, serve  # noqa: E402
from servers import InfluxDB1, free_port, http_request, unique_name, wait_until  # noqa: E402

TICK = "tick: drain and buffer lines"
WRITE = "HTTP write (storage.write and the client under it)"
HOOKS = "request hooks (start, response, point tuples)"
COLLECTOR = "collector (estimations, image loads, usages)"
COMPILED = (  # built-ins of core/_speedups.c, by a part of their profiler name: their step
    ("assign_id", "request id: make or check"),
    ("emit_points", HOOKS),
    ("now_ns", "worker clock"),
    ("encode_lines", "line encoding"),
    ("timing", COLLECTOR),
    ("Timing", COLLECTOR),
)
STEPS = (  # (part of the file's path, function names or None for all, step), first match wins
    ("core/request_id.py", None, "request id: make or check"),
    ("core/request_points.py", {"assign_id", "request_id"}, "request id: make or check"),
    ("core/clock.py", None, "worker clock"),
    ("sanic/header_text.py", None, "response header"),
    ("core/buffer.py", {"append", "extend", "_overflow"}, "buffer append"),
    ("sanic/request_hooks.py", None, HOOKS),
    ("aiohttp/request_hooks.py", None, HOOKS),
    ("aiohttp/__init__.py", None, HOOKS),
    ("core/request_points.py", None, HOOKS),
    ("core/collector.py", None, COLLECTOR),
    ("core/point.py", None, "line encoding"),
    ("core/buffer.py", None, TICK),
    ("core/writer.py", {"_tick_loop", "_drain_all", "_drain", "_warn_left_out"}, TICK),
    ("storages/", {"write"}, WRITE),
    ("core/writer.py", None, "send loop (batches, accounting)"),
)  # fmt: skip


def step_of(function: tuple[str, int, str]) -> str | None:
    """The step of a profiled function ``(file, line, name)``; ``None`` outside the package."""
    path, _, name = function
    if "_speedups" in name:
        return next((step for part, step in COMPILED if part in name), "other package code")
    if "luna_monitoring" not in path or name == "<module>":
        return None
    for part, names, step in STEPS:
        if part in path and (names is None or name in names):
            return step
    return "other package code"


def steps(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per step: own time of the package's functions plus that of the functions
    outside it they call directly (built-ins, ``deque`` methods); the write's whole subtree."""
    totals: dict[str, float] = defaultdict(float)
    for function, (_, _, own, _, callers) in stats.stats.items():
        step = step_of(function)
        if step == WRITE:
            outside = sum(c[3] for caller, c in callers.items() if step_of(caller) != WRITE)
            totals[step] += outside
        elif step is not None:
            totals[step] += own
        else:
            for caller, (_, _, own_from_caller, _) in callers.items():
                caller_step = step_of(caller)
                if caller_step is not None and caller_step != WRITE:
                    totals[caller_step] += own_from_caller
    return dict(totals)


def serve_profiled(variant: str, port: int, influx_port: int, database: str, out: str) -> None:
    """Serve ``variant`` until SIGINT, profiled between SIGUSR1 and SIGUSR2; the stats go to
    ``out``."""
    profile = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    signal.signal(signal.SIGUSR2, lambda *_: profile.disable())
    try:
        serve(variant, port, influx_port, database)
    finally:
        profile.disable()
        profile.dump_stats(out)


def run(variant: str, influx: InfluxDB1, args: argparse.Namespace, tmp: str) -> tuple:
    """Profile ``variant`` under wrk (a ``VARIANT@before`` with the package of
    ``--against``): its stats and the number of requests wrk completed."""
    port, database, out = free_port(), unique_name("profile"), f"{tmp}/{variant}.prof"
    influx.create_database(database)
    env = {**os.environ, "PYTHONPATH": args.against} if variant.endswith(BEFORE) else None
    process = subprocess.Popen(
        ["taskset", "-c", str(APP_CPU), sys.executable, __file__, "--serve",
         variant.removesuffix(BEFORE), str(port), str(influx.port), database, out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: http_request("GET", f"http://127.0.0.1:{port}/").status == 200,
                   timeout=30, ignore=(OSError,))  # fmt: skip
        wrk(port, 1, args.connections)
        process.send_signal(signal.SIGUSR1)
        requests = wrk(port, args.seconds, args.connections)
        process.send_signal(signal.SIGUSR2)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    return pstats.Stats(out), requests


def report(variant: str, stats: pstats.Stats, requests: int, bare_us: float, top: int) -> None:
    total_us = stats.total_tt / requests * 1e6
    print(f"\n{variant}: {requests} requests; profiled µs/request {total_us:.1f}, "
          f"{baseline(variant)} {bare_us:.1f} (+{total_us - bare_us:.1f})")  # fmt: skip
    parts = sorted(steps(stats).items(), key=lambda item: -item[1])
    for step, seconds in parts:
        print(f"  {seconds / requests * 1e6:7.2f} µs/request  {step}")
    print(f"  {sum(s for _, s in parts) / requests * 1e6:7.2f} µs/request  all the steps")
    if top:
        text = io.StringIO()
        stats.stream = text
        stats.sort_stats("tottime").print_stats("luna_monitoring", top)
        print(text.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=["monitored", "estimation-monitored"], choices=VARIANTS
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    parser.add_argument("--against", metavar="DIR", help="also profile the package in DIR")
    parser.add_argument("--serve", nargs=5)
    args = parser.parse_args()
    if args.serve:
        variant, port, influx_port, database, out = args.serve
        serve_profiled(variant, int(port), int(influx_port), database, out)
        return
    os.sched_setaffinity(0, {LOAD_CPU})
    with InfluxDB1() as influx, tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            bare, bare_requests = run(baseline(variant), influx, args, tmp)
            bare_us = bare.total_tt / bare_requests * 1e6
            for profiled in (variant, f"{variant}{BEFORE}") if args.against else (variant,):
                stats, requests = run(profiled, influx, args, tmp)
                report(profiled, stats, requests, bare_us, args.top)


if __name__ == "__main__":
    main()
