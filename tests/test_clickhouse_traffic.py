"""The example app's traffic in ClickHouse, compared row by row with InfluxDB; a two-shard
cluster written through ``Distributed`` tables.

The example service runs with ``storage_type: "clickhouse"`` and the test plugin
``tests/apps/influx_tee_plugin.py``, which writes every point it is handed to InfluxDB 1.x
through this package's ``Writer``: both databases get the same points from one run.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from servers import ClickHouse, ClickHouseCluster, wait_until

from example_app.demo import DATABASE, PLUGIN, Outcome, counts, plan, run_service
from example_app.influxd import InfluxD
from luna_monitoring.core.schema import SERIES
from luna_monitoring.storages.clickhouse_tables import EXTRAS, tables

TEE = "influx_tee_plugin:InfluxTeePlugin"
APPS = Path(__file__).resolve().parent / "apps"
_INFLUX_TYPES = {"float": float, "integer": int, "string": str, "boolean": bool}
_CLICKHOUSE_TYPES = {float: "Nullable(Float64)", int: "Nullable(Int64)", str: "Nullable(String)"}

Key = tuple[int, frozenset[tuple[str, str]]]
Rows = dict[Key, list[dict[str, Any]]]
"""The fields of the points of each (time, tag set), in the order read."""


def run(influx: InfluxD, server: ClickHouse, database: str, workdir: Path, **more: str) -> Outcome:
    """The demo's 200 requests with the example service writing to ClickHouse and the tee."""
    env = {
        "LUNA_MONITORING_STORAGE_TYPE": "clickhouse",
        "LUNA_MONITORING_PORT": str(server.port),
        "LUNA_MONITORING_DATABASE": database,
        "LUNA_MONITORING_PLUGINS": json.dumps([PLUGIN, TEE]),
        # tests/apps itself: some releases (sanic-ext 24.12.0) install a top-level ``tests``
        "PYTHONPATH": os.pathsep.join([str(APPS.parent.parent), str(APPS)]),
        "TEE_INFLUX_PORT": str(influx.port),
        "TEE_INFLUX_DATABASE": DATABASE,
        # Each insert makes a part of some 15-50 files: under this machine's load one takes up
        # to 1-2 s, so fewer, larger batches and time to write the last ones at shutdown.
        "LUNA_MONITORING_FLUSHING_PERIOD": "2",
        "LUNA_MONITORING_SHUTDOWN_TIMEOUT_S": "60",
        **more,
    }
    influx.create_database(DATABASE)
    return run_service(influx, plan(random.Random(15)), workdir, more_env=env)


def influx_rows(influx: InfluxD, series: str) -> tuple[Rows, dict[str, type]]:
    """InfluxDB's points of ``series`` and the type of each field key."""
    types = {
        key: _INFLUX_TYPES[kind]
        for key, kind in influx.query(f'SHOW FIELD KEYS FROM "{series}"', DATABASE)[0]["values"]
    }
    [found] = influx.query(f'SELECT * FROM "{series}"', DATABASE)
    rows: Rows = {}
    for values in found["values"]:
        row = dict(zip(found["columns"], values, strict=True))
        fields = {k: types[k](row[k]) for k in types if row[k] is not None}
        tags = {k: v for k, v in row.items() if k not in types and k != "time" and v}
        rows.setdefault((row["time"], frozenset(tags.items())), []).append(fields)
    return rows, types


def clickhouse_rows(server: ClickHouse, table: str, series: str) -> Rows:
    """ClickHouse's rows of ``series`` as points: columns and extras merged back."""
    layout = tables()[series]
    rows: Rows = {}
    for row in server.rows(f"SELECT * FROM {table}"):
        tags = {k: row[k] for k in layout.tags if row[k]}
        fields = {k: row[k] for k in layout.fields if row[k] is not None}
        if layout.extras:
            tags |= dict(zip(row["extra_tags.key"], row["extra_tags.value"], strict=True))
            for kind, column in EXTRAS.items():
                values = map(kind, row[f"{column}.value"])
                fields |= dict(zip(row[f"{column}.key"], values, strict=True))
        rows.setdefault((row["time"], frozenset(tags.items())), []).append(fields)
    return rows


def same_value(a: Any, b: Any) -> bool:
    """Equal type and value; floats may differ by one unit in the last place (ClickHouse
    18.16 rounds about 2 % of the floats it parses to a neighbouring double)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b or abs(a - b) <= math.ulp(a)
    return a == b


def merges(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields InfluxDB keeps of points with equal time and tags, for each write order."""
    return [functools.reduce(operator.or_, order, {}) for order in itertools.permutations(rows)]


def test_every_series_matches_influxdb(clickhouse: ClickHouse, clickhouse_db: str, tmp_path):
    """Same points in ClickHouse as in InfluxDB: counts, times, tags, field values and types.

    Where two points share time and tags (the worker clock, used from handler threads, can
    repeat a value: the core's issue, not the storage's), InfluxDB keeps one merged point and
    ClickHouse both rows; the merge is checked against them."""
    with InfluxD() as influx:
        outcome = run(influx, clickhouse, clickhouse_db, tmp_path)
        assert counts(influx).keys() == SERIES.keys()
        written = sum(stats["points_written"] for stats in outcome.worker_stats)
        column_types = {
            (c["table"], c["name"]): c["type"]
            for c in clickhouse.rows(
                f"SELECT table, name, type FROM system.columns WHERE database = '{clickhouse_db}'"
            )
        }
        off_by_one_ulp = compared = collisions = stored = 0
        for series in SERIES:
            expected, types = influx_rows(influx, series)
            got = clickhouse_rows(clickhouse, f"{clickhouse_db}.{series}", series)
            assert got.keys() == expected.keys(), series
            for key, [fields] in expected.items():
                stored += len(got[key])
                if len(got[key]) > 1:  # InfluxDB merged points with equal time and tags
                    collisions += len(got[key]) - 1
                    assert fields in merges(got[key]), (series, key)
                    continue
                [got_fields] = got[key]
                assert got_fields.keys() == fields.keys(), (series, key)
                for name, value in fields.items():
                    assert same_value(got_fields[name], value), (series, name, value)
                    off_by_one_ulp += got_fields[name] != value
                    compared += 1
            for name, kind in types.items():
                assert column_types[series, name] == _CLICKHOUSE_TYPES[kind], (series, name)
        assert stored == written
        assert collisions <= written // 100
        assert compared > 5000
        assert off_by_one_ulp <= compared // 20


def test_two_shard_cluster_stores_every_point_once(clickhouse_cluster: ClickHouseCluster, tmp_path):
    """`clickhouse-schema --cluster` on both nodes; two workers write through Distributed:
    each point stored once, both shards hold a share, Distributed returns the totals."""
    database = "mon"
    command = [sys.executable, "-m", "luna_monitoring", "clickhouse-schema"]
    script = subprocess.run(
        [*command, "--database", database, "--cluster", ClickHouseCluster.NAME],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    first, second = clickhouse_cluster.nodes
    for node in clickhouse_cluster.nodes:
        node.multiquery(script)
    with InfluxD() as influx:
        outcome = run(
            influx,
            first,
            database,
            tmp_path,
            LUNA_MONITORING_CLUSTER=ClickHouseCluster.NAME,
            LUNA_MONITORING_CREATE_TABLES="false",
        )
        expected = counts(influx)
    written = sum(stats["points_written"] for stats in outcome.worker_stats)
    assert len(outcome.worker_stats) == 2
    assert written == sum(expected.values())
    assert expected.keys() == SERIES.keys()

    def through_distributed() -> dict[str, int]:
        return {series: first.count(f"{database}.{series}") for series in SERIES}

    wait_until(lambda: sum(through_distributed().values()) >= written, timeout=30, interval=0.5)
    totals = through_distributed()
    assert sum(totals.values()) == written
    # Per series as in InfluxDB, but for points InfluxDB merged (equal time and tags).
    merged = {series: totals[series] - expected[series] for series in SERIES}
    assert min(merged.values()) >= 0 and sum(merged.values()) <= written // 100
    shares = []
    for node in clickhouse_cluster.nodes:
        local = {series: node.count(f"{database}.{series}_local") for series in SERIES}
        shares.append(sum(local.values()))
        for series in SERIES:
            unique = node.rows(f"SELECT uniqExact(time) AS u FROM {database}.{series}_local")
            assert unique == [{"u": local[series]}]
    assert sum(shares) == written
    assert min(shares) > written // 4
    assert second.count(f"{database}.requests") == totals["requests"] == len(outcome.calls)
