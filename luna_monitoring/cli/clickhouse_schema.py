"""``python -m luna_monitoring clickhouse-schema``: the ClickHouse DDL of every series' table.

Statements end with ``;`` and are separated by blank lines, ready for
``clickhouse-client --multiquery``. With ``--cluster``: ``<table>_local`` MergeTree tables
and ``Distributed`` tables named like the series over them, to run on every node, or once
with ``--on-cluster`` where distributed DDL (ZooKeeper) is set up.
"""

from __future__ import annotations

import argparse
import sys

from ..core.settings import MonitoringConfigError, Settings
from ..storages.clickhouse_tables import schema_statements
from .command import Command


def schema_text(
    database: str, table_prefix: str = "", cluster: str = "", on_cluster: bool = False
) -> str:
    """The DDL as one text of ``;``-terminated statements."""
    statements = schema_statements(database, table_prefix, cluster, on_cluster)
    return "".join(f"{statement};\n\n" for statement in statements)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", default="luna_monitoring", help="default: luna_monitoring")
    parser.add_argument("--table-prefix", default="", help="prepended to every table name")
    parser.add_argument(
        "--cluster", default="", metavar="NAME", help="tables <series>_local + Distributed"
    )
    parser.add_argument(
        "--on-cluster", action="store_true", help="add ON CLUSTER NAME (needs distributed DDL)"
    )


def _run(args: argparse.Namespace) -> int:
    try:
        Settings.from_config(
            {
                "storage_type": "clickhouse",
                "database": args.database,
                "table_prefix": args.table_prefix,
            }
        )
    except MonitoringConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.on_cluster and not args.cluster:
        print("error: --on-cluster needs --cluster NAME", file=sys.stderr)
        return 2
    sys.stdout.write(schema_text(args.database, args.table_prefix, args.cluster, args.on_cluster))
    return 0


CLICKHOUSE_SCHEMA = Command(
    "clickhouse-schema",
    "print the ClickHouse tables' DDL (pipe to clickhouse-client --multiquery)",
    _add_arguments,
    _run,
)
