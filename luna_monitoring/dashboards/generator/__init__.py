"""Development-time generator of the shipped dashboards, from the series schema.

It needs ``grafana-foundation-sdk`` (``pip install -e '.[dashboards-dev]'``); the installed
package never imports it. After changing the schema or a dashboard module run::

    python -m luna_monitoring.dashboards.generator          # rewrite the JSON files
    python -m luna_monitoring.dashboards.generator --check  # exit 1 when they are stale

and commit the JSON; ``tests/test_dashboards.py`` checks that they match.
"""

from __future__ import annotations

import argparse
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent
MISSING_SDK = (
    "the dashboard generator needs grafana-foundation-sdk: "
    "pip install -e '.[dashboards-dev]' (from a checkout of luna-monitoring)"
)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the dashboards' JSON files; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m luna_monitoring.dashboards.generator", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="only say which files are stale")
    args = parser.parse_args(argv)
    try:
        from .build import render
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("grafana_foundation_sdk"):
            raise
        print(MISSING_SDK)
        return 1
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "dashboards are up to date")
    return 1 if stale and args.check else 0
