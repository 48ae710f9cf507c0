"""Instructions per request of the aiohttp hello world, counted by valgrind: a figure that
does not swing with the machine, where throughput and CPU ratios move by a few hundredths
from one run to the next.

Each variant's app (``overhead.py``'s aiohttp variants: ``bare``, ``header``, ``excluded``,
``monitored``) is served in one process with no socket: pipelined ``GET /`` requests go
straight into aiohttp's protocol, a batch at a time, and a transport counts the responses.
The process runs under ``valgrind --tool=callgrind`` twice, for ``--requests`` and for three
times as many; the difference of the two totals over the difference in requests is the
cost of one request, start-up and shutdown left out. ``monitored`` delivers to a local
InfluxDB 1.x; under valgrind the app runs about 50 times slower, so its writes are
smaller and more frequent than at full speed, and its figure counts that delivery a little
high. Needs valgrind (``apt-get install valgrind``). ``PYTHONPATH=DIR`` counts the
package of another checkout (``git worktree add --detach DIR REF``, its extension built).

    python bench/instructions.py [--requests 2000] [--variants bare header excluded monitored]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import InfluxDB1  # noqa: E402

VARIANTS = ("bare", "header", "excluded", "monitored")
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"
PIPELINED = 50
"""Requests sent at once, as a client with that many connections would keep in flight."""
WARM_UP = 500


class CountingTransport(asyncio.Transport):
    """Swallows what the app writes; counts the responses and wakes the driver."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self.wanted = 0
        self.done: asyncio.Future[None] | None = None
        self.closing = False

    def write(self, data: bytes) -> None:
        self.responses += data.count(b"HTTP/1.1 ")
        if self.done is not None and self.responses >= self.wanted and not self.done.done():
            self.done.set_result(None)

    def writelines(self, data) -> None:
        for chunk in data:
            self.write(chunk)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def drive(variant: str, requests: int, influx_port: int) -> None:
    """Serve ``requests`` (after a warm-up) to the app of ``variant``, then shut it down."""
    from aiohttp import web

    from luna_monitoring.aiohttp import setup_monitoring

    headers = {"LUNA-Request-Id": "1700000000,1b4e28ba-2fa1-41d2-883f-0016d3cca427"}

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello", headers=headers if variant == "header" else None)

    app = web.Application()
    app.router.add_get("/", hello)
    if variant in ("excluded", "monitored"):
        config = {"version": 1, "port": influx_port, "database": "bench"}
        if variant == "excluded":
            config["excluded_routes"] = [".*"]
        setup_monitoring(app, config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    protocol = runner.server()
    transport = CountingTransport()
    protocol.connection_made(transport)
    loop = asyncio.get_running_loop()
    for _ in range((WARM_UP + requests) // PIPELINED):
        transport.wanted = transport.responses + PIPELINED
        transport.done = loop.create_future()
        protocol.data_received(REQUEST * PIPELINED)
        await transport.done
    await runner.cleanup()


def instructions(variant: str, requests: int, influx_port: int) -> int:
    """Instructions valgrind counted for a process serving ``requests``."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--serve", variant, str(requests), str(influx_port)],
            check=True, capture_output=True, timeout=1800,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict probes in every run
        )  # fmt: skip
        return int(re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--serve", nargs=3, metavar=("VARIANT", "REQUESTS", "INFLUX_PORT"))
    args = parser.parse_args()
    if args.serve:
        variant, requests, influx_port = args.serve
        asyncio.run(drive(variant, int(requests), int(influx_port)))
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py needs valgrind: apt-get install valgrind")
    per_request = {}
    with InfluxDB1() as influx:
        influx.create_database("bench")
        for variant in args.variants:
            few = instructions(variant, args.requests, influx.port)
            many = instructions(variant, 3 * args.requests, influx.port)
            per_request[variant] = (many - few) / (2 * args.requests)
            print(f"{variant:10} {per_request[variant]:9,.0f} instructions a request", flush=True)
    base = per_request.get("bare")
    if base:
        print(f"\n{'variant':10} {'per request':>11} {'added':>8} {'ratio':>6}")
        for variant, count in per_request.items():
            print(f"{variant:10} {count:11,.0f} {count - base:+8,.0f} {base / count:6.3f}")


if __name__ == "__main__":
    main()
