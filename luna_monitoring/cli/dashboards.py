"""``python -m luna_monitoring dashboards --out DIR [--datasource-uid UID]``: write the
shipped Grafana dashboards into a folder that Grafana provisions dashboards from."""

from __future__ import annotations

import argparse

from ..dashboards import dashboard_dir, write_dashboards
from .command import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument(
        "--datasource-uid",
        metavar="UID",
        help="uid of the InfluxDB (InfluxQL) data source to select "
        "(default: Grafana picks an InfluxDB data source)",
    )


def _run(args: argparse.Namespace) -> int:
    try:
        paths = write_dashboards(args.out, args.datasource_uid)
    except ValueError as exc:
        print(f"FAIL: {exc}")
        return 1
    except OSError as exc:
        print(f"FAIL: cannot write dashboards to {args.out!r}: {exc.strerror or exc}")
        return 1
    names = ", ".join(path.name for path in paths)
    source = (
        f"data source uid {args.datasource_uid}" if args.datasource_uid else "default data source"
    )
    print(f"wrote {len(paths)} dashboards ({names}) to {args.out} ({source})")
    return 0


DASHBOARDS = Command(
    "dashboards",
    f"write the Grafana dashboards (shipped in {dashboard_dir()}) into a folder",
    _add_arguments,
    _run,
)
