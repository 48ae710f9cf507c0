"""``series`` and ``config``: the README's reference tables, printed as Markdown."""

from __future__ import annotations

import argparse
import sys

from ..core.schema import series_table
from ..core.settings import MonitoringConfigError, Settings, config_reference
from .check import CheckFailed, load_config
from .command import Command, no_arguments


def config_table() -> str:
    """The configuration reference as a Markdown table."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, meaning in config_reference():
        lines.append(f"| `{key}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="JSON file with the MONITORING dict: its custom_series are listed too",
    )


def _series(args: argparse.Namespace) -> int:
    if args.config is None:
        return _print(series_table())
    try:
        settings = Settings.from_config(load_config(args.config))
    except (CheckFailed, MonitoringConfigError) as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    return _print(series_table(settings.custom_series))


SERIES = Command(
    "series",
    "print the series reference (Markdown), with a config's custom_series",
    _config_argument,
    _series,
)
CONFIG = Command(
    "config",
    "print the configuration reference (Markdown)",
    no_arguments,
    lambda args: _print(config_table()),
)
