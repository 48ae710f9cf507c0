"""Command line: ``python -m luna_monitoring COMMAND``.

Each command lives in its own module of this package and is listed once in
:data:`COMMANDS`; ``python -m luna_monitoring COMMAND --help`` describes it.
"""

from __future__ import annotations

import argparse

from ..core.version import package_version
from .check import CHECK
from .clickhouse_schema import CLICKHOUSE_SCHEMA
from .command import Command
from .dashboards import DASHBOARDS
from .reference import CONFIG, SERIES
from .report import REPORT

COMMANDS: tuple[Command, ...] = (SERIES, CONFIG, CHECK, DASHBOARDS, CLICKHOUSE_SCHEMA, REPORT)

DESCRIPTION = (
    "LUNA Remote SDK style monitoring: the README's reference tables, a check of the "
    "connection to the database, Grafana dashboards, the ClickHouse schema and an HTML "
    "report. 'python -m luna_monitoring COMMAND --help' describes a command."
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m luna_monitoring", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"luna-monitoring {package_version()}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(subparsers.add_parser(command.name, help=command.help))
    args = parser.parse_args(argv)
    return next(c for c in COMMANDS if c.name == args.command).run(args)
