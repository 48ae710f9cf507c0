"""One subcommand of ``python -m luna_monitoring``, declared as data."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that take no arguments."""


class Command(NamedTuple):
    """A subcommand: its name, one-line help, its arguments and what it runs (exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
