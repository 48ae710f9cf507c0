"""The disk spool end to end: real Sanic processes (``tests/apps/delivery_app.py``), a real
InfluxDB 1.x stopped and started, SIGINT, SIGKILL, other worker counts, damaged segments.

Every check counts the ``requests`` points in the database against the request ids the
service answered: each must be there exactly once.
"""

from __future__ import annotations

import http.client
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import InfluxDB1, http_request, wait_until
from test_delivery_faults import AppProcess

DB = "spool"
FAST = {"flushing_period": 0.2, "max_retry_delay_s": 1.0, "write_timeout_s": 2.0}
HEADER = b"LUNASPL1line-protocol\n"
FRAME = struct.Struct("<III")


class App(AppProcess):
    """``delivery_app.py`` with ``workers`` processes, stopped by SIGINT or SIGKILL."""

    def __init__(self, monitoring: dict[str, Any], workers: int, log_path: Path) -> None:
        super().__init__(monitoring, "INFO", log_path, workers, app_name="spool_app")

    def stats(self) -> dict[str, int]:
        """The counters of the worker that answers."""
        return http_request("GET", f"{self.url}/stats").json()

    def interrupt(self, timeout: float = 60.0) -> None:
        """SIGINT (graceful) and wait for the exit."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        assert self.proc.returncode == 0, self.log()

    def kill(self) -> None:
        """SIGKILL the whole process group (every worker)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """``start_app(workers=1, **monitoring)`` -> a running :class:`App`."""
    apps: list[App] = []

    def start(workers: int = 1, **monitoring: Any) -> App:
        apps.append(App(monitoring, workers, tmp_path / f"app{len(apps)}.log"))
        return apps[-1]

    yield start
    for app in apps:
        app.close()


RATE = 1500.0
"""Requests per second the clients send: a busy service, 1.5 times max_buffer_points per
second. (Unpaced, a loaded machine can stall the writer's tick for longer than the bound
lasts, and ``append`` then drops, counted: the request path never waits for the disk.)"""


def send(
    app: App, count: int, clients: int = 4, max_s: float = 120.0, keep_alive: bool = True
) -> list[str]:
    """``count`` GET /work from ``clients`` threads at ``RATE`` in all (bounded by
    ``max_s``), over keep-alive or a connection per request (which spreads them over the
    workers); the request ids answered (every request must succeed)."""
    ids: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_s

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        mine = []
        interval, next_at = clients / RATE, time.monotonic()
        try:
            for _ in range(n):
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
                if time.monotonic() > deadline:
                    failures.append("deadline")
                    break
                conn.request("GET", "/work", headers={} if keep_alive else {"Connection": "close"})
                response = conn.getresponse()
                response.read()
                if not keep_alive:
                    conn.close()
                if response.status != 200:
                    failures.append(str(response.status))
                mine.append(response.headers["LUNA-Request-Id"])
        finally:
            conn.close()
            with lock:
                ids.extend(mine)

    threads = [
        threading.Thread(target=client, args=(count // clients + (i < count % clients),))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_s + 10)
    assert failures == []
    assert len(ids) == count
    return ids


def stored(db: InfluxDB1) -> list[str]:
    """Request ids of the stored ``requests`` points, sorted (duplicates kept)."""
    return sorted(row["request_id"] for row in db.query("SELECT request_id FROM requests", DB))


def wait_stored(db: InfluxDB1, n: int, timeout: float = 120.0) -> list[str]:
    """Wait until ``n`` requests points are stored, then a little more for any extra."""
    wait_until(lambda: db.count(DB, "requests") >= n, timeout, interval=0.5)
    time.sleep(1.0)  # anything beyond n (a duplicate) would have arrived by now
    return stored(db)


@pytest.fixture
def db(own_influxdb: InfluxDB1) -> InfluxDB1:
    """A private InfluxDB 1.x with database ``spool``, stopped (``db.start()`` brings it)."""
    own_influxdb.create_database(DB)
    own_influxdb.stop()
    return own_influxdb


def monitoring(db: InfluxDB1, spool: Path, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "port": db.port,
        "database": DB,
        "spool_dir": str(spool),
        **FAST,
        **extra,
    }


class TestOutage:
    def test_outage_20x_the_memory_bound_every_point_once(
        self, db: InfluxDB1, start_app: Callable[..., App], tmp_path: Path
    ) -> None:
        """20,000 requests with max_buffer_points=1000 while InfluxDB is stopped: nothing
        dropped, memory bounded; after it is back every request point is stored once."""
        app = start_app(**monitoring(db, tmp_path / "spool", max_buffer_points=1000))
        sent = send(app, 20_000)
        stats = app.stats()
        assert stats["points_dropped"] == 0
        assert stats["points_buffered"] <= 1000
        assert stats["points_spooled"] >= 19_000
        db.start()
        assert wait_stored(db, 20_000) == sorted(sent)
        assert len(set(sent)) == 20_000
        final = wait_until(lambda: (s := app.stats())["spool_bytes"] == 0 and s, 30)
        assert final["points_replayed"] == final["points_spooled"]
        assert final["points_written"] + final["points_replayed"] == 20_000


class TestRestart:
    def test_sigint_in_an_outage_then_fewer_workers_every_point_once(
        self, db: InfluxDB1, start_app: Callable[..., App], tmp_path: Path
    ) -> None:
        """Two workers, InfluxDB down, SIGINT: both spool what they hold. Started again with
        one worker, which adopts the other's directory; InfluxDB back: every point once."""
        config = monitoring(db, tmp_path / "spool", max_buffer_points=1000)
        first = start_app(workers=2, **config)
        sent = send(first, 3000, keep_alive=False)
        first.interrupt()
        service = tmp_path / "spool" / "luna-remote-sdk"
        assert sorted(p.name for p in service.iterdir()) == ["w0", "w1"]
        assert list((service / "w0").glob("*.seg")) and list((service / "w1").glob("*.seg"))
        second = start_app(workers=1, **config)
        assert second.stats()["spool_segments_adopted"] >= 1
        assert list((service / "w1").glob("*.seg")) == []
        db.start()
        assert wait_stored(db, 3000) == sorted(sent)
        assert "adopted" in second.log()

    def test_more_workers_after_the_restart_share_nothing_twice(
        self, db: InfluxDB1, start_app: Callable[..., App], tmp_path: Path
    ) -> None:
        """One worker spools; three start at once (w0 its owner, w1 and w2 may try to adopt
        it while w0 starts): every point once."""
        config = monitoring(db, tmp_path / "spool", max_buffer_points=1000)
        first = start_app(workers=1, **config)
        sent = send(first, 3000)
        first.interrupt()
        db.start()
        start_app(workers=3, **config)
        assert wait_stored(db, 3000) == sorted(sent)


class TestCrash:
    @pytest.mark.parametrize("fsync", ["always", "interval", "never"])
    def test_sigkill_in_an_outage_loses_at_most_what_memory_held(
        self, db: InfluxDB1, start_app: Callable[..., App], tmp_path: Path, fsync: str
    ) -> None:
        """SIGKILL under traffic with InfluxDB down. The kernel keeps what was spooled under
        every fsync policy (a process crash is not a power loss), so: everything the last
        stats called spooled arrives, nothing twice, and the loss is at most the memory
        bound plus the requests in flight."""
        config = monitoring(db, tmp_path / "spool", max_buffer_points=1000, spool_fsync=fsync)
        app = start_app(**config)
        sent = send(app, 4000)
        done = threading.Event()
        late: list[str] = []
        thread = threading.Thread(target=lambda: late.extend(_until_set(app, done)))
        thread.start()
        time.sleep(0.5)
        spooled = app.stats()["points_spooled"]
        app.kill()
        done.set()
        thread.join(15)
        sent += late
        assert spooled >= 3000
        start_app(**config)
        db.start()
        ids = wait_stored(db, spooled)
        assert len(ids) == len(set(ids))
        assert set(ids) <= set(sent)
        assert len(ids) >= spooled
        # In memory at the kill: the buffer (max_buffer_points) and the spill being written
        # (half the bound plus one tick of arrivals).
        assert len(sent) - len(ids) <= 1000 + 500 + 100


def _until_set(app: App, done: threading.Event) -> list[str]:
    """GET /work until ``done`` or the app dies; the ids answered."""
    ids = []
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    try:
        while not done.is_set() and len(ids) < 20_000:
            conn.request("GET", "/work")
            response = conn.getresponse()
            response.read()
            ids.append(response.headers["LUNA-Request-Id"])
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()
    return ids


def frames(segment: Path) -> list[tuple[int, list[str]]]:
    """``(offset, lines)`` of every intact frame, read independently of the package."""
    data = segment.read_bytes()
    assert data.startswith(HEADER)
    out, offset = [], len(HEADER)
    while offset + FRAME.size <= len(data):
        length, count, _ = FRAME.unpack_from(data, offset)
        end = offset + FRAME.size + length
        if end > len(data):
            break
        ends = struct.unpack_from(f"<{count}I", data, offset + FRAME.size)
        body = data[offset + FRAME.size + 4 * count : end]
        starts = [0, *(e + 1 for e in ends[:-1])]
        out.append((offset, [body[a:b].decode() for a, b in zip(starts, ends, strict=True)]))
        offset = end
    return out


def request_id(line: str) -> str:
    return line.split('request_id="', 1)[1].split('"', 1)[0]


class TestDamage:
    def test_truncated_and_flipped_segments_lose_only_their_damaged_frames(
        self, db: InfluxDB1, start_app: Callable[..., App], tmp_path: Path
    ) -> None:
        """3000 points spooled in small segments; one truncated inside its last frame, one
        with a byte flipped in its second frame: those frames onward are counted damaged,
        every other point arrives, once."""
        spool = tmp_path / "spool"
        config = monitoring(db, spool, max_buffer_points=1000, spool_max_bytes=1 << 20)
        first = start_app(**config)
        sent = send(first, 3000)
        first.interrupt()
        segments = sorted(spool.glob("*/w0/*.seg"))
        assert len(segments) >= 3
        torn, flipped = segments[0], segments[1]
        torn_frames, flipped_frames = frames(torn), frames(flipped)
        assert len(flipped_frames) >= 2
        lost = {request_id(line) for line in torn_frames[-1][1]}
        lost |= {request_id(line) for _, lines in flipped_frames[1:] for line in lines}
        os.truncate(torn, torn.stat().st_size - 7)
        data = bytearray(flipped.read_bytes())
        data[flipped_frames[1][0] + FRAME.size + 20] ^= 0x40
        flipped.write_bytes(bytes(data))
        flipped_lost_bytes = len(data) - flipped_frames[1][0]
        torn_lost_bytes = torn.stat().st_size - torn_frames[-1][0]

        db.start()
        second = start_app(**config)
        expected = sorted(set(sent) - lost)
        assert wait_stored(db, len(expected)) == expected
        stats = wait_until(lambda: (s := second.stats())["spool_bytes"] == 0 and s, 30)
        assert stats["spool_corrupt_frames"] == 2
        assert stats["spool_corrupt_bytes"] == flipped_lost_bytes + torn_lost_bytes
        assert second.log().count("is damaged at byte") == 2
