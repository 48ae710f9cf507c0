"""ClickHouse storage against real ClickHouse 18.16 servers: rows, tables, errors, faults."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from servers import ClickHouse
from test_writer import until

from luna_monitoring.cli.check import run_check
from luna_monitoring.cli.clickhouse_schema import schema_text
from luna_monitoring.core.logs import worker_label
from luna_monitoring.core.point import Point
from luna_monitoring.core.schema import INT64_MAX, INT64_MIN, SERIES
from luna_monitoring.core.settings import MonitoringConfigError, Settings
from luna_monitoring.core.writer import Writer
from luna_monitoring.storages import make_storage

HOSTILE = [
    "quote \" and ' and `backtick`",
    "back\\slash\\",
    "line\nbreak\r\nand\ttab",
    "nul\x00byte",
    "unicode é ü 中文 😀 עברית",
    "a,b=c d",
    "x" * 100_000,
]
TAGS = {"service": "svc", "route": "POST:/sdk", "status_code": "200"}


def settings(server: ClickHouse, database: str, **more: Any) -> Settings:
    """ClickHouse settings for ``server`` and ``database`` with fast flushes and retries."""
    config = {
        "storage_type": "clickhouse",
        "port": server.port,
        "database": database,
        "flushing_period": 0.1,
        "max_retry_delay_s": 0.5,
        "write_timeout_s": 5.0,
        **more,
    }
    return Settings.from_config(config)


@pytest.fixture
async def start_writer() -> AsyncIterator[Callable[[Settings], Any]]:
    """``await start_writer(settings)`` -> a started ``Writer``; stopped after the test."""
    writers = []

    async def start(config: Settings) -> Writer:
        writer = Writer(config, make_storage(config))
        await writer.start()
        writers.append(writer)
        return writer

    yield start
    for writer in writers:
        await writer.stop()


class TestSettings:
    def test_port_defaults_to_8123_for_clickhouse_only(self):
        """Without a port, ClickHouse is 8123 and InfluxDB 8086; a given port is kept."""
        assert Settings.from_config({"storage_type": "clickhouse"}).port == 8123
        assert Settings.from_config({}).port == 8086
        assert Settings.from_config({"storage_type": "clickhouse", "port": 9999}).port == 9999

    def test_new_keys_have_their_defaults_and_target(self):
        """table_prefix '', cluster '', create_tables True; target names URL and database."""
        s = Settings.from_config({"storage_type": "clickhouse", "cluster": "c"})
        assert (s.table_prefix, s.cluster, s.create_tables) == ("", "c", True)
        assert (
            s.target
            == "ClickHouse at http://127.0.0.1:8123, database 'luna_monitoring', cluster 'c'"
        )

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            ({"table_prefix": "a-b"}, "['table_prefix']: expected letters, digits and _ only"),
            ({"table_prefix": "x`"}, "expected letters, digits and _ only, got 'x`'"),
            ({"create_tables": "yes"}, "['create_tables']: expected bool, got 'yes'"),
            ({"cluster": 1}, "['cluster']: expected str, got 1"),
            ({"storage_type": "clickhous"}, "expected one of 'influx', 'clickhouse'"),
        ],
    )
    def test_bad_values_name_the_key(self, config, message):
        """A wrong value fails with one message naming key, expectation and value."""
        with pytest.raises(MonitoringConfigError) as error:
            Settings.from_config({"storage_type": "clickhouse", **config})
        assert message in str(error.value)


class TestSchema:
    def test_piped_schema_creates_every_table_with_typed_columns(
        self, clickhouse: ClickHouse, clickhouse_db: str
    ):
        """`clickhouse-schema` piped to clickhouse-client makes one table per series."""
        command = [sys.executable, "-m", "luna_monitoring", "clickhouse-schema"]
        text = subprocess.run(
            [*command, "--database", clickhouse_db, "--table-prefix", "m_"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        clickhouse.multiquery(text)
        tables = clickhouse.rows(
            f"SELECT name, engine, partition_key, sorting_key FROM system.tables "
            f"WHERE database = '{clickhouse_db}' ORDER BY name"
        )
        assert [t["name"] for t in tables] == sorted(f"m_{name}" for name in SERIES)
        requests = next(t for t in tables if t["name"] == "m_requests")
        assert requests["engine"] == "MergeTree"
        assert requests["partition_key"] == "date"
        assert requests["sorting_key"] == "service, route, status_code, time"
        columns = {
            c["name"]: c["type"]
            for c in clickhouse.rows(
                f"SELECT name, type FROM system.columns "
                f"WHERE database = '{clickhouse_db}' AND table = 'm_image_load'"
            )
        }
        assert columns == {
            "time": "Int64",
            "datetime": "DateTime('UTC')",
            "date": "Date",
            "service": "String",
            "format": "String",
            "exif": "String",
            "autorotated": "String",
            "execution_time": "Nullable(Float64)",
            "size": "Nullable(Int64)",
            "height": "Nullable(Int64)",
            "width": "Nullable(Int64)",
        }
        errors = clickhouse.rows(
            f"SELECT name, type FROM system.columns WHERE database = '{clickhouse_db}' "
            f"AND table = 'm_errors' AND name LIKE 'extra%'"
        )
        assert {c["name"]: c["type"] for c in errors} == {
            "extra_tags.key": "Array(String)",
            "extra_tags.value": "Array(String)",
            "extra_floats.key": "Array(String)",
            "extra_floats.value": "Array(Float64)",
            "extra_ints.key": "Array(String)",
            "extra_ints.value": "Array(Int64)",
            "extra_strings.key": "Array(String)",
            "extra_strings.value": "Array(String)",
            "extra_bools.key": "Array(String)",
            "extra_bools.value": "Array(UInt8)",
        }
        clickhouse.multiquery(text)  # IF NOT EXISTS: a second run changes nothing

    def test_cluster_schema_has_local_and_distributed_tables(self):
        """--cluster: <series>_local MergeTree and Distributed <series>, per node or ON CLUSTER."""
        text = schema_text("mon", cluster="c")
        statements = [s for s in text.split(";\n\n") if s.strip()]
        assert len(statements) == 1 + 2 * len(SERIES)
        assert "CREATE TABLE IF NOT EXISTS `mon`.`requests_local`\n(" in text
        assert "ENGINE = Distributed('c', 'mon', 'requests_local', cityHash64(`time`))" in text
        assert "ON CLUSTER" not in text
        on_cluster = schema_text("mon", cluster="c", on_cluster=True)
        assert on_cluster.count("ON CLUSTER `c`") == len(statements)

    def test_on_cluster_needs_a_cluster(self):
        """--on-cluster without --cluster is one error line, exit code 2."""
        result = subprocess.run(
            [sys.executable, "-m", "luna_monitoring", "clickhouse-schema", "--on-cluster"],
            capture_output=True,
            text=True,
        )
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == "error: --on-cluster needs --cluster NAME\n"


class TestRows:
    async def test_hostile_values_round_trip_exactly(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """Quotes, backslashes, line breaks, NUL, Unicode, huge text, int64 limits: as sent."""
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        base = time.time_ns()
        sent = []
        for i, text in enumerate(HOSTILE):
            tags = {**TAGS, "route": text, "extra " + text: text}
            fields = {
                "request_id": text,
                "execution_time": 0.25 + i,
                "count " + text: i,
                "flag": i % 2 == 0,
                "ratio": i / 4,
                "note": text,
            }
            sent.append(Point("requests", base + i, tags, fields))
        sent.append(Point("requests", INT64_MAX, TAGS, {"huge": INT64_MAX, "tiny": INT64_MIN}))
        for point in sent:
            writer.append(point)
        assert await writer.flush()
        assert writer.stats["points_written"] == len(sent)
        rows = clickhouse.rows(f"SELECT * FROM {clickhouse_db}.requests ORDER BY time")
        for point, row in zip(sent, rows, strict=True):
            assert row["time"] == point.time_ns
            assert row["route"] == point.tags["route"]
            extra_tags = dict(zip(row["extra_tags.key"], row["extra_tags.value"], strict=True))
            assert extra_tags == {k: v for k, v in point.tags.items() if k not in TAGS}
            extras = {}
            for kind in ("floats", "ints", "strings", "bools"):
                keys, values = row[f"extra_{kind}.key"], row[f"extra_{kind}.value"]
                extras.update(zip(keys, values, strict=True))
            expected = {k: v for k, v in point.fields.items() if k not in SERIES["requests"].fields}
            assert extras == {k: int(v) if type(v) is bool else v for k, v in expected.items()}
            assert row["request_id"] == point.fields.get("request_id")
            assert row["execution_time"] == point.fields.get("execution_time")

    async def test_absent_and_non_finite_fields_are_null(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """None, NaN and ±inf are left out: the column is NULL, never 0; 0 stays 0."""
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        base = time.time_ns()
        fields = [
            {"execution_time": 0.0, "size": 0},
            {"execution_time": float("nan"), "size": None, "height": 5},
            {"execution_time": float("inf"), "width": 7, "bonus": float("-inf")},
        ]
        tags = {"service": "s", "format": "JPEG", "exif": "True", "autorotated": "False"}
        for i, values in enumerate(fields):
            writer.append(Point("image_load", base + i, tags, values))
        assert await writer.flush()
        rows = clickhouse.rows(
            f"SELECT execution_time, size, height, width FROM {clickhouse_db}.image_load "
            f"ORDER BY time"
        )
        assert rows == [
            {"execution_time": 0.0, "size": 0, "height": None, "width": None},
            {"execution_time": None, "size": None, "height": 5, "width": None},
            {"execution_time": None, "size": None, "height": None, "width": 7},
        ]

    async def test_lone_surrogates_become_question_marks(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """Text that is not Unicode is written with ``?``, as for InfluxDB."""
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        writer.append(Point("requests", 1, {**TAGS, "route": "a\ud800b"}, {"request_id": "\udfff"}))
        assert await writer.flush()
        rows = clickhouse.rows(f"SELECT route, request_id FROM {clickhouse_db}.requests")
        assert rows == [{"route": "a?b", "request_id": "?"}]

    async def test_unwritable_points_are_counted_not_sent(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """Unknown series, bad time, wrong types, int beyond int64, an unknown tag or field
        outside the request series: invalid; no field: counted."""
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        ok = {"execution_time": 0.5}
        invalid = [
            Point("no_such_series", 1, TAGS, ok),
            Point("requests", "1", TAGS, ok),
            Point("requests", 2**63, TAGS, ok),
            Point("requests", 1, TAGS, {"execution_time": "slow"}),
            Point("requests", 1, TAGS, {"execution_time": True}),
            Point("face_detection", 1, {"batch_size": "1"}, {"detection_count": 1.5}),
            Point("face_detection", 1, {"batch_size": "1"}, {"execution_time": 1, "x": 1}),
            Point("face_detection", 1, {"batch_size": "1", "x": "1"}, {"execution_time": 1}),
            Point("requests", 1, TAGS, {"n": 2**63}),
            Point("requests", 1, {**TAGS, "x": ["list"]}, ok),
            Point("requests", 1, {**TAGS, 5: "five"}, ok),
            Point("requests", 1, TAGS, {"blob": b"bytes"}),
        ]
        empty = [Point("requests", 2, TAGS, {"execution_time": None, "x": float("nan")})]
        for point in [*invalid, *empty, Point("requests", 3, TAGS, {"execution_time": 1})]:
            writer.append(point)
        assert await writer.flush()
        stats = writer.stats
        assert (stats["points_invalid"], stats["points_without_fields"]) == (len(invalid), 1)
        assert stats["points_written"] == 1
        rows = clickhouse.rows(f"SELECT time, execution_time FROM {clickhouse_db}.requests")
        assert rows == [{"time": 3, "execution_time": 1.0}]

    async def test_extra_values_can_be_queried_by_key(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """The README's queries on handler-added tags and fields."""
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        for i, account in enumerate(("a1", "a2", "a1")):
            tags = {**TAGS, "account": account}
            writer.append(
                Point("requests", i, tags, {"execution_time": 0.1, "decode_time": i + 0.5})
            )
        writer.append(Point("requests", 9, TAGS, {"execution_time": 0.1}))
        assert await writer.flush()
        db = clickhouse_db
        by_account = clickhouse.rows(
            f"SELECT extra_tags.value[indexOf(extra_tags.key, 'account')] AS account, "
            f"count() AS n, sum(extra_floats.value[indexOf(extra_floats.key, 'decode_time')]) "
            f"AS decode FROM {db}.requests WHERE has(extra_tags.key, 'account') "
            f"GROUP BY account ORDER BY account"
        )
        assert by_account == [
            {"account": "a1", "n": 2, "decode": 3.0},
            {"account": "a2", "n": 1, "decode": 1.5},
        ]
        joined = clickhouse.rows(
            f"SELECT f.key AS key, f.value AS value FROM {db}.requests "
            f"ARRAY JOIN extra_floats AS f WHERE time = 2"
        )
        assert joined == [{"key": "decode_time", "value": 2.5}]


def image_load(time_ns: int, fmt: str) -> Point:
    """An image_load point of format ``fmt``."""
    tags = {"service": "s", "format": fmt, "exif": "False", "autorotated": "False"}
    return Point("image_load", time_ns, tags, {"execution_time": 0.5, "size": 10})


def requests(start: int, n: int) -> list[Point]:
    """``n`` requests points with times from ``start``."""
    return [Point("requests", start + i, TAGS, {"execution_time": 0.5}) for i in range(n)]


class TestErrors:
    async def test_refused_value_is_rejected_while_the_rest_arrive(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer, caplog
    ):
        """A table with an Enum column refuses 'GIF': that table's rows of the batch are
        rejected and counted; the other tables' rows and the next batch arrive."""
        ddl = schema_text(clickhouse_db).replace(
            "`format` String", "`format` Enum8('JPEG' = 1, 'PNG' = 2)"
        )
        clickhouse.multiquery(ddl)
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        for point in [*requests(0, 10), image_load(1, "JPEG"), image_load(2, "GIF")]:
            writer.append(point)
        assert await writer.flush()
        for point in [*requests(100, 5), image_load(3, "PNG")]:
            writer.append(point)
        assert await writer.flush()
        stats = writer.stats
        assert (stats["points_written"], stats["points_rejected"]) == (16, 2)
        assert (stats["points_buffered"], stats["retries"]) == (0, 0)
        assert clickhouse.count(f"{clickhouse_db}.requests") == 15
        rows = clickhouse.rows(f"SELECT time, format FROM {clickhouse_db}.image_load")
        assert rows == [{"time": 3, "format": "PNG"}]
        [warning] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert "rejected 2 points as bad data (2 in all): HTTP 400: table image_load: Code: 49" in (
            warning
        )
        assert "Unknown element 'GIF' for type Enum8" in warning

    async def test_missing_tables_give_one_clear_line_then_points_arrive(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer, caplog
    ):
        """create_tables false and no database: one line naming the fix; points stay buffered
        and arrive once the schema is applied."""
        caplog.set_level(logging.WARNING)
        writer = await start_writer(settings(clickhouse, clickhouse_db, create_tables=False))
        for point in requests(0, 20):
            writer.append(point)
        assert not await writer.flush()
        await until(lambda: writer.stats["retries"] >= 3)
        clickhouse.multiquery(f"CREATE DATABASE {clickhouse_db};")
        await until(lambda: writer.stats["write_errors"] >= 5)
        clickhouse.multiquery(schema_text(clickhouse_db))
        await until(lambda: writer.stats["points_written"] == 20)
        assert clickhouse.count(f"{clickhouse_db}.requests") == 20
        failures = [r.getMessage() for r in caplog.records if "writing to" in r.getMessage()]
        assert failures == [
            f"monitoring: writing to ClickHouse at {clickhouse.url}, database "
            f"'{clickhouse_db}' failed (HTTP 404: no database '{clickhouse_db}' (create_tables "
            "is false): create them with `python -m luna_monitoring clickhouse-schema | "
            "clickhouse-client --multiquery`, or set create_tables); points stay buffered "
            f"(20 now) and writes are retried with backoff [{worker_label()}]"
        ]

    async def test_retry_after_a_partial_batch_stores_nothing_twice(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """One table stored, another missing (404, retried): the retry sends only the rest;
        the table is created again and every point is stored once."""
        writer = await start_writer(settings(clickhouse, clickhouse_db))
        for point in requests(0, 5):
            writer.append(point)
        assert await writer.flush()
        clickhouse.query(f"DROP TABLE {clickhouse_db}.image_load")
        for point in [*requests(10, 30), image_load(50, "PNG")]:
            writer.append(point)
        await until(lambda: writer.stats["points_written"] == 36)
        assert clickhouse.count(f"{clickhouse_db}.requests") == 35
        assert clickhouse.count(f"{clickhouse_db}.image_load") == 1
        assert writer.stats["retries"] >= 1

    async def test_wrong_password_is_retried_and_never_shown(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer, caplog
    ):
        """401 from ClickHouse: credentials error line, retried, password nowhere."""
        secret = "not-the-pw-123"
        config = settings(
            clickhouse,
            clickhouse_db,
            username="writer",
            password=secret,
            shutdown_timeout_s=0.2,  # its final flush is refused too
        )
        writer = await start_writer(config)
        writer.append(requests(0, 1)[0])
        assert not await writer.flush()
        text = caplog.text + repr(config) + repr(writer.storage)
        assert "refused the credentials (HTTP 401: Code: 193, Wrong password for user writer)" in (
            text
        )
        assert secret not in text

    async def test_right_password_writes(
        self, clickhouse: ClickHouse, clickhouse_db: str, start_writer
    ):
        """Basic authentication with the writer user's password."""
        config = settings(
            clickhouse, clickhouse_db, username="writer", password=ClickHouse.PASSWORD
        )
        writer = await start_writer(config)
        writer.append(requests(0, 1)[0])
        assert await writer.flush()
        assert clickhouse.count(f"{clickhouse_db}.requests") == 1


class TestCheck:
    def check(self, server: ClickHouse, database: str, **more: Any) -> tuple[bool, str]:
        config = {"storage_type": "clickhouse", "port": server.port, "database": database}
        return run_check(
            None, {f"LUNA_MONITORING_{k.upper()}": str(v) for k, v in {**config, **more}.items()}
        )

    def test_ok_creates_the_tables(self, clickhouse: ClickHouse, clickhouse_db: str):
        """OK line naming the tables; they exist afterwards."""
        assert self.check(clickhouse, clickhouse_db) == (
            True,
            f"OK: {len(SERIES)} tables ready and inserts allowed in ClickHouse at "
            f"{clickhouse.url}, database '{clickhouse_db}'",
        )
        assert clickhouse.count(f"{clickhouse_db}.requests") == 0

    def test_missing_database_without_create_tables(
        self, clickhouse: ClickHouse, clickhouse_db: str
    ):
        """create_tables false: the FAIL line names the missing database and the fix."""
        ok, line = self.check(clickhouse, clickhouse_db, create_tables="false")
        assert not ok
        assert line.startswith(f"FAIL: ClickHouse answered 404: no database '{clickhouse_db}'")

    def test_readonly_user_cannot_insert(self, clickhouse: ClickHouse, clickhouse_db: str):
        """A readonly user: FAIL, not allowed (403)."""
        assert self.check(clickhouse, clickhouse_db)[0]
        ok, line = self.check(clickhouse, clickhouse_db, create_tables="false", username="reader")
        assert (ok, line) == (
            False,
            f"FAIL: not allowed to write (403) to database '{clickhouse_db}'",
        )

    def test_unreachable_and_wrong_password(self, clickhouse: ClickHouse, clickhouse_db: str):
        """Nothing listening, wrong password: one line each, password hidden."""
        ok, line = self.check(clickhouse, clickhouse_db, port=1)
        assert not ok and line.startswith("FAIL: cannot reach http://127.0.0.1:1: ")
        ok, line = self.check(clickhouse, clickhouse_db, username="writer", password="pw-x-1")
        assert (ok, line) == (
            False,
            "FAIL: authentication failed (401): check the username/password",
        )


class TestFaults:
    async def test_sigkill_and_restart_lose_nothing(self, own_clickhouse: ClickHouse, start_writer):
        """ClickHouse SIGKILLed under traffic and back 2 s later: every point stored once."""
        writer = await start_writer(settings(own_clickhouse, "crash"))
        sent = 0
        began = time.monotonic()
        killed = restarted = False
        while time.monotonic() - began < 6:
            for point in requests(sent, 50):
                writer.append(point)
            sent += 50
            elapsed = time.monotonic() - began
            if elapsed > 1.5 and not killed:
                own_clickhouse.kill(signal.SIGKILL)
                killed = True
            if elapsed > 3.5 and not restarted:
                await asyncio.to_thread(own_clickhouse.start)
                restarted = True
            await asyncio.sleep(0.02)
        await until(lambda: writer.stats["points_written"] == sent, timeout=30)
        stored = own_clickhouse.rows(
            "SELECT count() AS n, uniqExact(time) AS u FROM crash.requests"
        )
        assert stored == [{"n": sent, "u": sent}]
        stats = writer.stats
        assert stats["points_dropped"] == stats["points_rejected"] == 0
        assert stats["retries"] >= 1
