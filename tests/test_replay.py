"""The writer with a disk spool, in process: spill beyond half the bound, replay through the
same rules (batch size, retry, 400, 413), rate limit, live points first, the v2 storage,
bad disks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import (
    ClickHouse,
    InfluxDatabase,
    InfluxDB1,
    VictoriaMetrics,
    free_port,
    unique_name,
)
from stub_server import StubServer, limit_lines
from test_writer import MakeWriter, feed, make_writer, numbers, points, until

from luna_monitoring.core.point import Point

__all__ = ["make_writer"]  # the fixture, used by name

SPOOL_WRITE_FAILED = "monitoring: writing the spool in"
REPLAYED = ("points_replayed", "points_replay_rejected")


async def feed_paced(writer, batch: list[Point], chunk: int = 100) -> None:
    """Append ``batch`` ``chunk`` points per writer tick, as a busy service would."""
    for start in range(0, len(batch), chunk):
        feed(writer, batch[start : start + chunk])
        await asyncio.sleep(0.06)


def stored_numbers(db: InfluxDatabase) -> list[int]:
    return sorted(row["n"] for row in db.query("SELECT n FROM requests"))


@pytest.fixture
def down_db(own_influxdb: InfluxDB1) -> Iterator[InfluxDatabase]:
    """A database on a private server that is stopped (``db.server.start()`` brings it)."""
    own_influxdb.create_database("spool")
    own_influxdb.stop()
    yield InfluxDatabase(own_influxdb, "spool")


FAST = {"version": 1, "max_retry_delay_s": 0.3, "write_timeout_s": 2.0}


class TestOutage:
    async def test_outage_10x_the_bound_then_every_point_once(
        self, down_db: InfluxDatabase, make_writer: MakeWriter, tmp_path: Path
    ) -> None:
        """10,000 points with max_buffer_points=1000 while the database is down: memory
        stays bounded, nothing is dropped; once it is up every point is stored once."""
        writer = await make_writer(
            port=down_db.server.port,
            database="spool",
            max_buffer_points=1000,
            spool_dir=str(tmp_path),
            **FAST,
        )
        batch = points(10_000)
        for start in range(0, 10_000, 100):
            feed(writer, batch[start : start + 100])
            assert writer.stats["points_buffered"] <= 1000
            await asyncio.sleep(0.06)
        stats = writer.stats
        assert stats["points_dropped"] == 0
        assert stats["points_spooled"] + stats["points_buffered"] == 10_000
        assert stats["spool_bytes"] > 0
        down_db.server.start()
        await until(lambda: writer.stats["points_replayed"] == stats["points_spooled"], 60)
        await until(lambda: writer.stats["points_written"] == 10_000 - stats["points_spooled"])
        assert stored_numbers(down_db) == list(range(10_000))
        assert writer.stats["spool_bytes"] == 0
        assert list(tmp_path.rglob("*.seg")) == []

    async def test_stop_spools_at_once_and_a_new_writer_replays(
        self, down_db: InfluxDatabase, make_writer: MakeWriter, tmp_path: Path, caplog
    ) -> None:
        caplog.set_level(logging.INFO, "luna_monitoring")
        config = {
            "port": down_db.server.port,
            "database": "spool",
            "spool_dir": str(tmp_path),
            "shutdown_timeout_s": 30.0,
            **FAST,
        }
        writer = await make_writer(**config)
        feed(writer, points(3000))
        began = time.monotonic()
        await writer.stop()
        assert time.monotonic() - began < 5  # no waiting out shutdown_timeout_s
        assert writer.stats["points_spooled"] == 3000
        assert any("spooled 3000 undelivered points" in r.getMessage() for r in caplog.records)
        down_db.server.start()
        again = await make_writer(**config)
        await until(lambda: again.stats["points_replayed"] == 3000, 30)
        assert [n for n in stored_numbers(down_db)] == list(range(3000))


class TestStorages:
    async def test_v2_storage_replays_into_victoria_metrics(
        self, victoria: VictoriaMetrics, make_writer: MakeWriter, tmp_path: Path
    ) -> None:
        """The spool is storage-neutral: spooled by the v2 storage (nothing listening),
        written back through /api/v2/write to VictoriaMetrics, every point once."""
        series = unique_name("spooled")
        config = {"version": 2, "token": "tok", "spool_dir": str(tmp_path), "batch_size": 700}
        writer = await make_writer(port=free_port(), **config)
        feed(writer, points(3000, series=series))
        await writer.stop()
        assert writer.stats["points_spooled"] == 3000
        writer = await make_writer(port=victoria.port, **config)
        await until(lambda: writer.stats["points_replayed"] == 3000, 30)
        assert victoria.count_points(series, "n") == 3000

    async def test_clickhouse_storage_replays_its_rows(
        self, clickhouse: ClickHouse, clickhouse_db: str, make_writer: MakeWriter, tmp_path: Path
    ) -> None:
        """The spool keeps the lines a storage writes, ClickHouse's rows too: spooled with
        nothing listening, written back to ClickHouse, every point once."""
        config = {
            "storage_type": "clickhouse",
            "database": clickhouse_db,
            "spool_dir": str(tmp_path),
        }
        writer = await make_writer(port=free_port(), **config)
        feed(writer, points(3000))
        await writer.stop()
        assert writer.stats["points_spooled"] == 3000
        writer = await make_writer(port=clickhouse.port, **config)
        await until(lambda: writer.stats["points_replayed"] == 3000, 30)
        rows = clickhouse.rows(f"SELECT extra_ints.value FROM {clickhouse_db}.requests")
        assert sorted(row["extra_ints.value"][0] for row in rows) == list(range(3000))


class TestReplayRules:
    async def test_413_splits_spooled_batches_as_live_ones(
        self, make_writer: MakeWriter, tmp_path: Path
    ) -> None:
        """2000 points spooled at a stop with nothing listening; replayed to a stub that
        answers 413 above 300 lines: split, every point written once, batches <= 1000."""
        config = {"spool_dir": str(tmp_path), "batch_size": 1000, **FAST}
        writer = await make_writer(port=free_port(), **config)
        feed(writer, points(2000))
        await writer.stop()
        assert writer.stats["points_spooled"] == 2000
        with StubServer(limit_lines(300)) as stub:
            writer = await make_writer(port=stub.port, **config)
            await until(lambda: writer.stats["points_replayed"] == 2000, 30)
        accepted = [r for r in stub.writes if len(r.lines) <= 300]
        assert sorted(numbers(accepted)) == list(range(2000))
        assert max(len(r.lines) for r in stub.writes) == 1000
        assert list(tmp_path.rglob("*.seg")) == []

    async def test_field_type_conflict_in_replay_is_counted_rejected(
        self, influx_db: InfluxDatabase, make_writer: MakeWriter, tmp_path: Path
    ) -> None:
        """490 requests and 10 errors points spooled; errors.n became a string meanwhile:
        InfluxDB's partial write stores the 490, the 10 are counted rejected."""
        config = {"version": 1, "database": influx_db.name, "spool_dir": str(tmp_path)}
        writer = await make_writer(port=free_port(), **config)
        feed(writer, points(490) + points(10, start=490, series="errors"))
        await writer.stop()
        assert writer.stats["points_spooled"] == 500
        # Field types are per shard: the conflict is a second before, in the same shard.
        influx_db.write_lines(f'errors,x=y n="text" {time.time_ns() - 10**9}'.encode())
        writer = await make_writer(port=influx_db.server.port, **config)
        await until(lambda: sum(writer.stats[k] for k in REPLAYED) == 500, 30)
        assert (writer.stats["points_replayed"], writer.stats["points_replay_rejected"]) == (
            490,
            10,
        )
        assert stored_numbers(influx_db) == list(range(490))
        assert list(tmp_path.rglob("*.seg")) == []

    async def test_replay_is_rate_limited_and_live_points_keep_flowing(
        self, influx_db: InfluxDatabase, make_writer: MakeWriter, tmp_path: Path
    ) -> None:
        """20,000 spooled points at spool_replay_points_per_s=10000: the replay takes about
        2 s; live points appended meanwhile are written within a flush period or two."""
        config = {
            "version": 1,
            "database": influx_db.name,
            "spool_dir": str(tmp_path),
            "batch_size": 1000,
            "spool_replay_points_per_s": 10_000.0,
        }
        writer = await make_writer(port=free_port(), **config)
        feed(writer, points(20_000, series="requests"))
        await writer.stop()
        assert writer.stats["points_spooled"] == 20_000
        writer = await make_writer(port=influx_db.server.port, **config)
        began = time.monotonic()
        await until(lambda: writer.stats["points_replayed"] > 0, 10)
        live = points(10, series="live")
        feed(writer, live)
        await until(lambda: writer.stats["points_written"] == 10, 5)
        assert writer.stats["points_replayed"] < 15_000  # the live points did not wait
        await until(lambda: writer.stats["points_replayed"] == 20_000, 30)
        assert time.monotonic() - began >= 1.7
        assert influx_db.count("requests") == 20_000


class TestBadDisks:
    async def test_read_only_spool_dir_is_one_error_line_and_memory_behaviour(
        self, make_writer: MakeWriter, mount_tmpfs: Callable[..., Path], caplog
    ) -> None:
        mount = mount_tmpfs("64k", read_only=True)
        writer = await make_writer(
            port=free_port(),
            max_buffer_points=100,
            spool_dir=str(mount / "spool"),
            shutdown_timeout_s=0.2,  # nothing listens: the final flush cannot deliver
            **FAST,
        )
        feed(writer, points(400))
        assert writer.stats["points_buffered"] == 100
        assert writer.stats["points_dropped"] == 300
        assert "points_spooled" not in writer.stats
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is None
        message = errors[0].getMessage()
        assert "\n" not in message
        assert f"spool_dir '{mount / 'spool'}' cannot be used" in message
        assert "Read-only file system" in message and 'set spool_dir to ""' in message

    async def test_disk_filling_later_warns_rate_limited_and_counts_every_point(
        self,
        down_db: InfluxDatabase,
        make_writer: MakeWriter,
        mount_tmpfs: Callable[..., Path],
        caplog,
    ) -> None:
        """A 256 KiB tmpfs fills during the outage: one warning, the bound keeps memory,
        drops are counted; once the database is up every point is written, replayed or
        counted dropped."""
        writer = await make_writer(
            port=down_db.server.port,
            database="spool",
            max_buffer_points=500,
            spool_dir=str(mount_tmpfs("256k")),
            **FAST,
        )
        await feed_paced(writer, points(6000))
        stats = writer.stats
        assert stats["points_dropped"] > 0
        assert stats["points_buffered"] <= 500
        assert 0 < stats["points_spooled"] < 6000
        warnings = [r.getMessage() for r in caplog.records if SPOOL_WRITE_FAILED in r.getMessage()]
        assert len(warnings) == 1 and "No space left on device" in warnings[0]
        down_db.server.start()
        await until(lambda: writer.stats["points_replayed"] == stats["points_spooled"], 30)
        await until(lambda: writer.stats["points_buffered"] == 0, 10)
        final = writer.stats
        assert final["points_written"] + final["points_replayed"] + final["points_dropped"] == 6000
        assert len(stored_numbers(down_db)) == 6000 - final["points_dropped"]
