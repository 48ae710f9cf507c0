"""Command line: ``python -m luna_monitoring COMMAND``.

Each command lives in its own module of this package and is listed once in
:data:`COMMANDS`; ``python -m luna_monitoring COMMAND --help`` describes it.
"""

from __future__ import annotations

import argparse

from .check import CHECK
from .command import Command
from .reference import CONFIG, SERIES
from .report import REPORT

COMMANDS: tuple[Command, ...] = (SERIES, CONFIG, CHECK, REPORT)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m luna_monitoring", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(subparsers.add_parser(command.name, help=command.help))
    args = parser.parse_args(argv)
    return next(c for c in COMMANDS if c.name == args.command).run(args)
