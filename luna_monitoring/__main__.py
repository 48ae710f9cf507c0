"""Command line: ``python -m luna_monitoring {series,config,check}``.

``series`` prints the series reference, ``config`` the configuration reference (both as
the Markdown tables of the README); ``check [CONFIG.json]`` writes one point with a
``MONITORING`` config from the file or from ``LUNA_MONITORING_*`` variables and prints one
line; the exit code is 0 on success, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from .check import run_check
from .schema import series_table
from .settings import config_reference


def config_table() -> str:
    """The configuration reference as a Markdown table."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, meaning in config_reference():
        lines.append(f"| `{key}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m luna_monitoring", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("series", help="print the series reference (Markdown)")
    commands.add_parser("config", help="print the configuration reference (Markdown)")
    check = commands.add_parser(
        "check", help="write one test point; print OK or what is wrong in one line"
    )
    check.add_argument(
        "config",
        nargs="?",
        help="JSON file with the MONITORING dict (default: LUNA_MONITORING_* variables)",
    )
    args = parser.parse_args(argv)
    if args.command == "series":
        sys.stdout.write(series_table())
        return 0
    if args.command == "config":
        sys.stdout.write(config_table())
        return 0
    ok, line = run_check(args.config)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
