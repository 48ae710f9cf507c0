"""ClickHouse tables of the series: their columns and the DDL that creates them.

One table per series, named ``<table_prefix><series>``::

    time      Int64                 nanoseconds since the epoch (the point's timestamp)
    datetime  DateTime('UTC')       MATERIALIZED from time (whole seconds), for humans
    date      Date                  MATERIALIZED from datetime, the daily partition key
    service   String                and every tag of the series: String ('' when absent)
    <field>   Nullable(Float64 | Int64 | String) per the series' field type; NULL = absent
    extra_tags     Nested(key String, value String)    tags a handler added
    extra_floats   Nested(key String, value Float64)   fields a handler added, by type
    extra_ints     Nested(key String, value Int64)     (the extra_* columns only in the
    extra_strings  Nested(key String, value String)    request series, requests and
    extra_bools    Nested(key String, value UInt8)     errors: nothing adds to the others)

``MergeTree``, ``PARTITION BY date``, ``ORDER BY (service, <tags>, time)``. With a cluster,
``<table>_local`` holds the rows on every shard and ``<table>`` is a ``Distributed`` table
over them, sharded by ``cityHash64(time)``: one service's points spread over every shard, and
a point sent again goes to the shard that has it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..core.schema import SERIES, Kind, Series

EXTRAS: Mapping[type, str] = {
    str: "extra_strings",
    float: "extra_floats",
    int: "extra_ints",
    bool: "extra_bools",
}
"""Nested column of the handler-added fields of each value type."""
EXTRA_TAGS = "extra_tags"
_EXTRA_TYPES = {
    EXTRA_TAGS: "String",
    "extra_floats": "Float64",
    "extra_ints": "Int64",
    "extra_strings": "String",
    "extra_bools": "UInt8",
}
_FIELD_TYPES = {float: "Float64", int: "Int64", str: "String"}
LOCAL_SUFFIX = "_local"
SHARDING_KEY = "cityHash64(`time`)"


def quote(name: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Table:
    """The table of one series: its name, String tag columns and typed field columns."""

    name: str
    tags: frozenset[str]
    fields: Mapping[str, type]
    order_by: tuple[str, ...]
    extras: bool

    @classmethod
    def of(cls, series: Series, prefix: str = "") -> Table:
        """The table of ``series`` named ``<prefix><series>``; the ``extra_*`` columns only
        for request series (``requests``, ``errors``), the ones handlers add to."""
        tags = ("service", *series.tags)
        extras = series.kind is Kind.REQUEST
        return cls(prefix + series.name, frozenset(tags), series.fields, (*tags, "time"), extras)

    def columns(self, computed: str = "MATERIALIZED") -> Iterator[str]:
        """Column definitions, in table order; ``computed``: how ``datetime`` and ``date`` are
        made (a ``Distributed`` table has them as ``ALIAS``: it cannot forward them)."""
        seconds = "toDateTime(intDiv(`time`, 1000000000), 'UTC')"
        yield "`time` Int64"
        yield f"`datetime` DateTime('UTC') {computed} {seconds}"
        yield f"`date` Date {computed} toDate({seconds})"
        for tag in self.order_by[:-1]:
            yield f"{quote(tag)} String"
        for name, kind in self.fields.items():
            yield f"{quote(name)} Nullable({_FIELD_TYPES[kind]})"
        if self.extras:
            for name, kind in _EXTRA_TYPES.items():
                yield f"{quote(name)} Nested(`key` String, `value` {kind})"


def tables(prefix: str = "") -> dict[str, Table]:
    """The table of every series, by series name."""
    return {name: Table.of(series, prefix) for name, series in SERIES.items()}


def schema_statements(
    database: str, prefix: str = "", cluster: str = "", on_cluster: bool = False
) -> list[str]:
    """``CREATE ... IF NOT EXISTS`` statements of the database and every table.

    With ``cluster``: ``<table>_local`` MergeTree tables and ``Distributed`` tables over them
    named like the series, to run on every node, or once with ``on_cluster`` (``ON CLUSTER``,
    which needs distributed DDL, i.e. ZooKeeper).
    """
    where = f" ON CLUSTER {quote(cluster)}" if cluster and on_cluster else ""
    db = quote(database)
    statements = [f"CREATE DATABASE IF NOT EXISTS {db}{where}"]
    for table in tables(prefix).values():
        local = table.name + LOCAL_SUFFIX if cluster else table.name
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {db}.{quote(local)}{where}{_columns(table)}\n"
            f"ENGINE = MergeTree\nPARTITION BY `date`\n"
            f"ORDER BY ({', '.join(map(quote, table.order_by))})"
        )
        if cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {db}.{quote(table.name)}{where}"
                f"{_columns(table, 'ALIAS')}\nENGINE = Distributed("
                f"{literal(cluster)}, {literal(database)}, {literal(local)}, {SHARDING_KEY})"
            )
    return statements


def _columns(table: Table, computed: str = "MATERIALIZED") -> str:
    return "\n(\n    " + ",\n    ".join(table.columns(computed)) + "\n)"


def table_names(prefix: str = "", cluster: str = "") -> list[str]:
    """Every table the statements create (``_local`` and Distributed with a cluster)."""
    names = [table.name for table in tables(prefix).values()]
    return names + [name + LOCAL_SUFFIX for name in names] if cluster else names
