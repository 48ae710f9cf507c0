"""``series`` and ``config``: the README's reference tables, printed as Markdown."""

from __future__ import annotations

import sys

from ..core.schema import series_table
from ..core.settings import config_reference
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


SERIES = Command(
    "series",
    "print the series reference (Markdown)",
    no_arguments,
    lambda args: _print(series_table()),
)
CONFIG = Command(
    "config",
    "print the configuration reference (Markdown)",
    no_arguments,
    lambda args: _print(config_table()),
)
