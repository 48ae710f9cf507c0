"""What the request benchmarks share: the CPUs they pin to, wrk, a process's CPU time, and
the ``--serve`` entry by which a bench runs its app in a process of its own."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

APP_CPU, LOAD_CPU = 0, 1
"""The app under test runs on APP_CPU; wrk and the databases on LOAD_CPU."""
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
WRK_NICENESS, DATABASE_NICENESS = -10, 10
"""The priorities of :func:`put_wrk_first`."""
_wrk_niceness: int | None = None


def put_wrk_first(database_pid: int) -> None:
    """Run wrk ahead of the database that shares LOAD_CPU from now on: every thread of
    process ``database_pid`` at :data:`DATABASE_NICENESS`, wrk at :data:`WRK_NICENESS`
    (where allowed: root)."""
    global _wrk_niceness
    _wrk_niceness = WRK_NICENESS
    for task in Path(f"/proc/{database_pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), DATABASE_NICENESS)


def _set_wrk_priority() -> None:
    if _wrk_niceness is not None:
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, _wrk_niceness)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of process ``pid`` so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def wrk_output(port: int, seconds: int, connections: int = 32, *options: str) -> str:
    """What wrk (one thread, on LOAD_CPU) prints after loading ``/`` of a local port."""
    return subprocess.run(
        ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
         *options, f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
        preexec_fn=_set_wrk_priority,
    ).stdout  # fmt: skip


def wrk(port: int, seconds: int, connections: int = 32) -> int:
    """Run wrk on LOAD_CPU; the number of requests it completed."""
    return int(re.search(r"(\d+) requests in", wrk_output(port, seconds, connections))[1])


def parse_or_serve(
    parser: argparse.ArgumentParser, serve: Callable[[str, int, int, str], None]
) -> argparse.Namespace | None:
    """The arguments, after adding ``--serve VARIANT PORT INFLUX_PORT DB``; when that is
    given, run ``serve`` with them instead (the bench's app process) and return ``None``."""
    parser.add_argument("--serve", nargs=4, metavar=("VARIANT", "PORT", "INFLUX_PORT", "DB"))
    args = parser.parse_args()
    if args.serve is None:
        return args
    variant, port, influx_port, database = args.serve
    serve(variant, int(port), int(influx_port), database)
    return None
