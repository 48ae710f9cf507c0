"""``python -m luna_monitoring report``: write the service's health as one HTML page.

Reads the config as ``check`` does (a JSON file or ``LUNA_MONITORING_*``), queries the
range with InfluxQL and writes a self-contained page. The outcome is one line:
``OK: wrote PATH ...`` or ``FAIL: ...`` naming the cause; exit 0 or 1 (2 when the
``report`` extra is missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.settings import MonitoringConfigError, Settings
from .check import CheckFailed, load_config
from .command import Command

EXTRA_MISSING = "FAIL: the report needs matplotlib: pip install 'luna-monitoring[report]'"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="JSON file with the MONITORING dict (default: LUNA_MONITORING_* variables)",
    )
    parser.add_argument("--since", help="the range is the last SINCE: 30m, 1h, 2d (default 1h)")
    parser.add_argument("--start", help="start of the range: ISO 8601 (UTC unless an offset)")
    parser.add_argument("--end", help="end of the range (default: now)")
    parser.add_argument("--service", help="value of the service tag (default: the config's)")
    parser.add_argument("--out", default="report.html", help="the HTML file to write")
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per query (default 60)"
    )


def run_report(args: argparse.Namespace) -> tuple[int, str]:
    """Run the whole report; return ``(exit code, the line to print)``."""
    try:
        from ..report import QueryError, RangeError, time_range, write_report
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in ("matplotlib", "numpy"):
            return 2, EXTRA_MISSING
        raise
    if not args.timeout > 0:
        return 1, f"FAIL: --timeout must be a positive number of seconds, not {args.timeout:g}"
    try:
        window = time_range(args.since, args.start, args.end)
        config = load_config(args.config)
        try:
            settings = Settings.from_config(config)
        except MonitoringConfigError as exc:
            return 1, f"FAIL: bad config: {exc}"
        if settings.storage_type != "influx":
            return 1, (
                f"FAIL: the report reads InfluxDB (InfluxQL); storage_type is "
                f"{settings.storage_type!r}: query ClickHouse with the README's SQL instead"
            )
        out = Path(args.out)
        if not out.parent.is_dir():
            return 1, f"FAIL: cannot write {args.out!r}: no directory {str(out.parent)!r}"
        service = args.service or settings.service
        data = write_report(settings, window, service, out, args.timeout)
    except (CheckFailed, RangeError, QueryError) as exc:
        return 1, f"FAIL: {exc}"
    except OSError as exc:
        return 1, f"FAIL: cannot write {args.out!r}: {exc.strerror}"
    ratio = data.errors / data.requests
    return 0, (
        f"OK: wrote {out.resolve()}: {data.requests} requests, {data.errors} errors "
        f"({ratio:.1%}) of service {service!r}, {window.describe()}"
    )


def _run(args: argparse.Namespace) -> int:
    code, line = run_report(args)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


REPORT = Command(
    "report",
    "write the service's health (requests, errors, SDK, licence) as an HTML page",
    _add_arguments,
    _run,
)
