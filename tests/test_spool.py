"""The disk spool and its replay on real files: framing, damage, bounds, locks, adoption,
full and read-only disks, fsync policies (counted with strace)."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from luna_monitoring.core.replay import Replay
from luna_monitoring.core.spool import (
    FRAME,
    HEADER,
    Spool,
    SpoolFull,
    server_number,
    service_dirname,
)

HOSTILE = [
    'requests,route=GET:/a\\ b,status_code=200 request_id="x\\"y\\\\z",execution_time=0.5 1',
    'errors,service=l\u00fcna\u2603 msg="line\nbreak\r\tand \U0001f600" 2',
    'm f="lone \ud800 surrogate" 3',
    "m f=" + "9" * 10 + "i 4",
]


def lines(start: int, count: int) -> list[str]:
    return [
        f'requests,service=s request_id="{i}",execution_time=0.25 {i}'
        for i in range(start, start + count)
    ]


def open_spool(root: Path, number: int = 0, max_bytes: int = 1 << 20, **kw) -> Spool:
    return Spool.open(str(root), "svc", number, max_bytes, **kw)


def replay_all(spool: Spool, batch: int = 700) -> list[str]:
    """Everything the spool replays, settled batch by batch as written."""
    replay = Replay(spool)
    out: list[str] = []
    while True:
        replay.fill(batch)
        if not replay.lines:
            return out
        body, count = replay.begin(batch)
        out.extend(body.decode().split("\n") if count else [])
        replay.settle(count)


def segments(spool: Spool) -> list[Path]:
    return sorted(spool.directory.glob("*.seg"))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = open_spool(tmp_path)
    yield spool
    spool.close()


class TestNames:
    @pytest.mark.parametrize(
        ("service", "expected"),
        [
            ("luna-remote-sdk", "luna-remote-sdk"),
            ("..", "%2E%2E"),
            ("a/b\\c", "a%2Fb%5Cc"),
            ("l\u00fcna \U0001f600", "l%C3%BCna%20%F0%9F%98%80"),
            ("\ud800", "%ED%A0%80"),
        ],
    )
    def test_service_directory_names_are_safe_and_distinct(self, service, expected) -> None:
        assert service_dirname(service) == expected

    def test_long_service_names_are_cut_and_kept_distinct(self) -> None:
        a, b = service_dirname("x" * 300), service_dirname("x" * 299 + "y")
        assert len(a) <= 200 and a != b

    def test_server_number_from_the_sanic_worker_name(self) -> None:
        assert server_number("Sanic-Server-3-0") == 3
        assert server_number("Sanic-Server-12-4") == 12
        assert server_number("") == 0
        assert server_number("SomethingElse") == 0


class TestRoundTrip:
    def test_lines_come_back_in_order_and_segments_go(self, spool: Spool) -> None:
        assert spool.write(lines(0, 2500)) == (2500, None)
        assert spool.points_spooled == 2500
        assert replay_all(spool) == lines(0, 2500)
        assert (segments(spool), spool.bytes) == ([], 0)

    def test_hostile_lines_come_back_byte_for_byte(self, spool: Spool) -> None:
        """Line breaks inside a string field, quotes, backslashes, unicode, a lone
        surrogate (written as ``?``, as the writer's bodies do)."""
        spool.write(HOSTILE)
        replay = Replay(spool)
        replay.fill(100)
        assert replay.lines == 4
        body, count = replay.begin(100)
        expected = "\n".join(HOSTILE).encode("utf-8", "replace")
        assert (body, count) == (expected, 4)
        replay.settle(4)
        assert segments(spool) == []
        assert spool.bytes == 0

    def test_replay_is_oldest_first_across_segments(self, tmp_path: Path) -> None:
        spool = open_spool(tmp_path, max_bytes=1 << 20)
        spool.segment_bytes = 20_000
        for start in range(0, 3000, 300):
            spool.write(lines(start, 300))
        assert len(segments(spool)) > 3
        assert replay_all(spool) == lines(0, 3000)
        assert segments(spool) == []

    def test_ack_resumes_after_the_settled_lines(self, tmp_path: Path) -> None:
        """A restart in mid-replay sends none of the settled lines again."""
        spool = open_spool(tmp_path)
        spool.write(lines(0, 2500))
        replay = Replay(spool)
        replay.fill(1500)
        replay.begin(1234)
        replay.settle(1234)
        replay.close()
        spool.close()
        again = open_spool(tmp_path)
        assert replay_all(again) == lines(1234, 1266)
        again.close()

    def test_rejected_lines_also_finish_a_segment(self, spool: Spool) -> None:
        spool.write(lines(0, 10))
        replay = Replay(spool)
        replay.fill(100)
        replay.begin(100)
        replay.settle(6, 4)
        assert (replay.written, replay.rejected, segments(spool)) == (6, 4, [])


def frame_offsets(segment: Path) -> list[int]:
    data = segment.read_bytes()
    offsets, offset = [], len(HEADER)
    while offset < len(data):
        offsets.append(offset)
        offset += FRAME.size + FRAME.unpack_from(data, offset)[0]
    return offsets


class TestDamage:
    def test_flipped_byte_skips_from_the_damaged_frame_on(self, tmp_path: Path) -> None:
        spool = open_spool(tmp_path)
        spool.write(lines(0, 3000))  # three frames
        spool.segment_bytes = 1
        spool.write(lines(3000, 500))  # a second segment, intact
        first = segments(spool)[0]
        second_frame = frame_offsets(first)[1]
        data = bytearray(first.read_bytes())
        data[second_frame + FRAME.size + 50] ^= 0x01
        first.write_bytes(bytes(data))
        replay = Replay(spool)
        out: list[str] = []
        while True:
            replay.fill(700)
            if not replay.lines:
                break
            body, count = replay.begin(700)
            out.extend(body.decode().split("\n"))
            replay.settle(count)
        assert out == lines(0, 1000) + lines(3000, 500)
        assert replay.corrupt_frames == 1
        assert replay.corrupt_bytes == len(data) - second_frame
        assert len(replay.damaged) == 1 and f"at byte {second_frame}" in replay.damaged[0]
        assert segments(spool) == []
        spool.close()

    def test_torn_tail_counts_one_frame_and_its_bytes(self, tmp_path: Path) -> None:
        spool = open_spool(tmp_path)
        spool.write(lines(0, 2500))
        segment = segments(spool)[0]
        spool.take_oldest()
        size = segment.stat().st_size
        third = frame_offsets(segment)[2]
        os.truncate(segment, size - 10)
        replay = Replay(spool)
        replay.fill(5000)
        assert replay.lines == 2000
        assert (replay.corrupt_frames, replay.corrupt_bytes) == (1, size - 10 - third)
        spool.close()

    def test_a_segment_with_a_bad_header_is_skipped_whole(self, spool: Spool) -> None:
        spool.write(lines(0, 10))
        segment = segments(spool)[0]
        data = bytearray(segment.read_bytes())
        data[0] ^= 0xFF
        segment.write_bytes(bytes(data))
        replay = Replay(spool)
        replay.fill(100)
        assert (replay.lines, replay.corrupt_frames, replay.corrupt_bytes) == (0, 1, len(data))
        assert segments(spool) == []


class TestBounds:
    def test_past_max_bytes_the_oldest_segments_are_dropped_and_counted(
        self, tmp_path: Path
    ) -> None:
        spool = open_spool(tmp_path, max_bytes=65536)  # segments of 8 KiB
        for start in range(0, 5000, 100):
            assert spool.write(lines(start, 100))[1] is None
            assert spool.bytes <= 65536
        kept = replay_all(spool)
        assert spool.points_dropped + len(kept) == 5000
        assert spool.points_dropped > 4000
        assert kept == lines(5000 - len(kept), len(kept))  # the newest, in order
        spool.close()

    def test_a_frame_larger_than_the_spool_is_refused(self, tmp_path: Path) -> None:
        spool = open_spool(tmp_path, max_bytes=65536)
        written, error = spool.write(["m f=" + "1" * 70_000 + "i 1"])
        assert written == 0 and isinstance(error, SpoolFull)
        assert spool.bytes == 0
        spool.close()


class TestLocks:
    def test_a_second_process_with_the_same_number_gets_another_directory(
        self, tmp_path: Path
    ) -> None:
        spool = open_spool(tmp_path, number=3)
        code = f"""
            from luna_monitoring.core.spool import Spool
            spool = Spool.open({str(tmp_path)!r}, "svc", 3, 1 << 20)
            print(spool.directory.name)
        """
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert (spool.directory.name, out.stdout.strip()) == ("w3", "w1027")
        spool.close()

    def test_a_live_workers_segments_are_never_adopted(self, tmp_path: Path) -> None:
        live = open_spool(tmp_path, number=1)
        live.write(lines(0, 10))
        other = open_spool(tmp_path, number=0)
        assert other.adopt() == 0
        assert len(segments(live)) == 1
        live.close()
        assert other.adopt() == 1
        assert replay_all(other) == lines(0, 10)
        other.close()


def _start_and_adopt(root: str, number: int, barrier, queue) -> None:
    spool = Spool.open(root, "svc", number, 1 << 30)
    barrier.wait()
    spool.adopt()
    queue.put((number, sorted(p.name for p in spool.directory.glob("*.seg"))))
    barrier.wait()
    spool.close()


class TestAdoption:
    @pytest.mark.parametrize("round_", range(5))
    def test_two_workers_starting_at_once_adopt_each_orphan_segment_exactly_once(
        self, tmp_path: Path, round_: int
    ) -> None:
        """Orphans w2..w5 (12 segments): two workers start together; every segment ends in
        exactly one of their directories, none is left behind, none is copied."""
        names = []
        for number in range(2, 6):
            orphan = open_spool(tmp_path, number=number)
            orphan.segment_bytes = 1  # a segment per frame
            for start in range(3):
                orphan.write(lines(number * 100 + start * 10, 10))
            names += [p.name for p in segments(orphan)]
            orphan.close()
        assert len(names) == 12
        ctx = multiprocessing.get_context("spawn")
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_start_and_adopt, args=(str(tmp_path), n, barrier, queue))
            for n in (0, 1)
        ]
        for proc in procs:
            proc.start()
        held = dict(queue.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        assert sorted(held[0] + held[1]) == sorted(names)
        assert not set(held[0]) & set(held[1])
        left = [p for p in (tmp_path / "svc").glob("w[2-5]/*.seg")]
        assert left == []


class TestBadDisks:
    def test_a_full_disk_fails_the_write_and_keeps_the_segment_intact(
        self, mount_tmpfs: Callable[..., Path]
    ) -> None:
        spool = Spool.open(str(mount_tmpfs("256k")), "svc", 0, 1 << 30)
        written_all = 0
        for start in range(0, 20_000, 500):
            written, error = spool.write(lines(start, 500))
            written_all += written
            if error is not None:
                break
        assert error is not None and error.errno == 28  # ENOSPC
        assert 0 < written_all < 20_000
        assert replay_all(spool) == lines(0, written_all)
        spool.close()

    def test_file_size_limit_fails_the_write_cleanly(self, tmp_path: Path) -> None:
        """RLIMIT_FSIZE in a subprocess: EFBIG (Python ignores SIGXFSZ), nothing torn."""
        code = f"""
            import resource
            from luna_monitoring.core.spool import Spool
            from luna_monitoring.core.replay import Replay
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
            spool = Spool.open({str(tmp_path)!r}, "svc", 0, 1 << 30)
            spool.segment_bytes = 1 << 30
            total = 0
            for start in range(0, 10_000, 300):
                lines = [f"m i={{i}}i {{i}}" for i in range(start, start + 300)]
                written, error = spool.write(lines)
                total += written
                if error:
                    break
            replay = Replay(spool)
            replay.fill(100_000)
            print(total, error.errno, replay.lines, replay.corrupt_frames)
        """
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            check=True,
        )
        total, errno, replayed, corrupt = map(int, out.stdout.split())
        assert errno == 27  # EFBIG
        assert 0 < total == replayed and corrupt == 0

    def test_a_read_only_spool_dir_cannot_be_opened(self, mount_tmpfs: Callable[..., Path]) -> None:
        with pytest.raises(OSError, match="Read-only file system"):
            Spool.open(str(mount_tmpfs("64k", read_only=True)), "svc", 0, 1 << 20)

    def test_a_spool_dir_under_a_file_cannot_be_opened(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("")
        with pytest.raises(OSError):
            Spool.open(str(tmp_path / "file" / "spool"), "svc", 0, 1 << 20)


FSYNC_SCRIPT = """
import sys, time
from luna_monitoring.core.spool import Spool
spool = Spool.open(sys.argv[1], "svc", 0, 1 << 30, fsync=sys.argv[2])
for i in range(40):
    spool.write([f"m i={j}i {j}" for j in range(100)])
    if spool.sync_due():  # as the writer's tick does
        spool.sync()
    time.sleep(0.05)
print("closing", flush=True)
spool.close()
"""


class TestFsync:
    @pytest.mark.parametrize(
        ("policy", "low", "high"), [("always", 41, 45), ("interval", 3, 6), ("never", 0, 0)]
    )
    def test_fsync_calls_follow_the_policy(
        self, tmp_path: Path, policy: str, low: int, high: int
    ) -> None:
        """40 writes over 2 s, counted with strace: always = one fsync per write (+ the
        directory of the new segment), interval = about one per second as the tick calls
        it (+ the directory, + close),
        never = none."""
        strace = shutil.which("strace")
        assert strace, "strace is needed: apt-get install strace"
        trace = tmp_path / "trace"
        script = tmp_path / "fsync.py"
        script.write_text(FSYNC_SCRIPT)
        subprocess.run(
            [
                strace,
                "-f",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
                str(trace),
                sys.executable,
                str(script),
                str(tmp_path / "spool"),
                policy,
            ],
            check=True,
            capture_output=True,
        )
        calls = [
            line for line in trace.read_text().splitlines() if re.search(r"\bf(data)?sync\(", line)
        ]
        assert low <= len(calls) <= high, calls
