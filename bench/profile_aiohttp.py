"""Where the monitored aiohttp request path spends its time: cProfile of a hello world
served by ``web.run_app`` under wrk load, monitored (``setup_monitoring`` delivering to a
local InfluxDB 1.x) and bare in the same run.

Profiles count Python calls, so absolute times are inflated (every call pays the
profiler); what is compared is each part's share of the app's profiled time, and the total
per request of the monitored app against the bare one.

    python bench/profile_aiohttp.py [--seconds 5] [--connections 32] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import InfluxDB1, free_port, http_request, unique_name, wait_until  # noqa: E402


def serve(monitored: bool, port: int, influx_port: int, database: str, out: str) -> None:
    """Serve the app under cProfile until SIGINT; the stats go to ``out``."""
    from aiohttp import web

    from luna_monitoring.aiohttp import setup_monitoring

    async def hello(request):
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    if monitored:
        setup_monitoring(app, {"version": 1, "port": influx_port, "database": database})
    profile = cProfile.Profile()
    profile.enable()
    try:
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    finally:
        profile.disable()
        profile.dump_stats(out)


def _wrk(port: int, seconds: int, connections: int) -> int:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    return int(out.split(" requests in")[0].rsplit(maxsplit=1)[-1])


def profile(monitored: bool, influx: InfluxDB1, args: argparse.Namespace, tmp: str) -> tuple:
    port, database, out = free_port(), unique_name("profile"), f"{tmp}/{monitored}.prof"
    influx.create_database(database)
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(int(monitored)), str(port), str(influx.port),
         database, out],
    )  # fmt: skip
    try:
        wait_until(lambda: http_request("GET", f"http://127.0.0.1:{port}/").status == 200,
                   timeout=30, ignore=(OSError,))  # fmt: skip
        requests = _wrk(port, args.seconds, args.connections)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    stored = influx.count(database, "requests") if monitored else None
    return pstats.Stats(out), requests, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--serve", nargs=5)
    args = parser.parse_args()
    if args.serve:
        monitored, port, influx_port, database, out = args.serve
        serve(monitored == "1", int(port), int(influx_port), database, out)
        return
    with InfluxDB1() as influx, tempfile.TemporaryDirectory() as tmp:
        bare, bare_requests, _ = profile(False, influx, args, tmp)
        stats, requests, stored = profile(True, influx, args, tmp)
    per_request = {
        "bare": bare.total_tt / bare_requests * 1e6,
        "monitored": stats.total_tt / requests * 1e6,
    }
    print(f"profiled µs/request: {per_request}; monitored stored {stored}/{requests}+")
    text = io.StringIO()
    stats.stream = text
    stats.sort_stats("tottime").print_stats(args.top)
    print(text.getvalue())
    text = io.StringIO()
    stats.stream = text
    stats.sort_stats("cumulative").print_stats("luna_monitoring", args.top)
    print(text.getvalue())


if __name__ == "__main__":
    main()
