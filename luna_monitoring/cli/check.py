"""``python -m luna_monitoring check``: write one point with a config and say what is wrong.

The point is ``monitoring_check,service=<service> ok=1i`` and goes through the same storage
the extension uses (ClickHouse: the tables are created or checked and an empty insert made);
``--dry-run`` writes nothing (see :mod:`.dry_run`) and ``--timeout`` bounds each request.
The outcome is one line: ``OK: ...`` or ``FAIL: ...`` naming the cause
(bad config, unreachable, timeout, 401/403, missing bucket or database, other status).
Secrets never appear in it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.clock import UniqueClock
from ..core.envconfig import config_from_env
from ..core.point import LineEncoder, Point, join_lines
from ..core.settings import SECRET_KEYS, MonitoringConfigError, Settings
from ..storages import WriteError, make_storage, misconfiguration
from .command import Command
from .dry_run import DryRunFailed, dry_run

CHECK_SERIES = "monitoring_check"
"""Measurement of the check point (no dashboard reads it)."""


class CheckFailed(Exception):
    """The check failed; the message is the one line to show (without secrets)."""


def load_config(path: str | None, environ: Mapping[str, str] | None = None) -> Any:
    """The ``MONITORING`` dict from a JSON file, or from the environment when ``path`` is None.

    The file holds the ``MONITORING`` dict itself or an object with a ``MONITORING`` key.
    """
    if path is None:
        try:
            return config_from_env(environ)
        except MonitoringConfigError as exc:
            raise CheckFailed(f"bad config: {exc}") from None
    try:
        config = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckFailed(f"cannot read config file {path!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise CheckFailed(f"config file {path!r} is not valid JSON: {exc}") from None
    if isinstance(config, dict) and isinstance(config.get("MONITORING"), dict):
        config = config["MONITORING"]
    return config


def explain(exc: WriteError, settings: Settings) -> str:
    """What a failed write means for the user, in one line."""
    status, message = exc.status, exc.message
    clickhouse = settings.storage_type == "clickhouse"
    v2 = settings.version == 2 and not clickhouse
    if clickhouse and status not in (None, 401, 403):
        return f"ClickHouse answered {status}: {message}"
    if status is None:
        return f"cannot reach {settings.url}: {message}"
    if status == 401:
        return f"authentication failed (401): check the {'token' if v2 else 'username/password'}"
    if status == 403:
        where = f"bucket {settings.bucket!r}" if v2 else f"database {settings.database!r}"
        return f"not allowed to write (403) to {where}"
    return misconfiguration(exc, settings) or f"InfluxDB answered {status}: {message}"


async def check(settings: Settings) -> str:
    """Write one check point; return the success line or raise :class:`CheckFailed`.

    ClickHouse: create (``create_tables``) or check the tables and make an empty insert.
    """
    point = Point(CHECK_SERIES, UniqueClock().now_ns(), {"service": settings.service}, {"ok": 1})
    storage = make_storage(settings)
    try:
        if settings.storage_type == "clickhouse":
            return await storage.check()
        await storage.write(join_lines(LineEncoder().encode_lines([point])))
    except WriteError as exc:
        raise CheckFailed(explain(exc, settings)) from None
    finally:
        await storage.close()
    return f"wrote 1 point ({CHECK_SERIES}) to {settings.target}"


def _hide(line: str, config: Any) -> str:
    if isinstance(config, Mapping):
        for key in SECRET_KEYS:
            secret = config.get(key)
            if isinstance(secret, str) and secret:
                line = line.replace(secret, "<hidden>")
    return line


def run_check(
    path: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    dry_run_only: bool = False,
    timeout_s: float | None = None,
) -> tuple[bool, str]:
    """Run the whole check; return ``(ok, the line to print)``.

    ``dry_run_only``: reach the server and authenticate, write nothing. ``timeout_s``:
    bound on each request instead of ``write_timeout_s``.

    >>> run_check("monitoring.json")
    (True, "OK: wrote 1 point (monitoring_check) to InfluxDB v2 at http://..., bucket 'b'")
    """
    config: Any = None
    try:
        config = load_config(path, environ)
        try:
            settings = Settings.from_config(config)
        except MonitoringConfigError as exc:
            raise CheckFailed(f"bad config: {exc}") from None
        if timeout_s is not None:
            settings = dataclasses.replace(settings, write_timeout_s=timeout_s)
        line = "OK: " + asyncio.run(dry_run(settings) if dry_run_only else check(settings))
    except (CheckFailed, DryRunFailed) as exc:
        return False, _hide(f"FAIL: {exc}", config)
    return True, _hide(line, config)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="JSON file with the MONITORING dict (default: LUNA_MONITORING_* variables)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="reach the server and authenticate, but write nothing",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="give up on each request after S seconds (default: write_timeout_s)",
    )


def _run(args: argparse.Namespace) -> int:
    ok, line = run_check(args.config, dry_run_only=args.dry_run, timeout_s=args.timeout)
    print(line)
    return 0 if ok else 1


CHECK = Command(
    "check", "write one test point; print OK or what is wrong in one line", _add_arguments, _run
)
