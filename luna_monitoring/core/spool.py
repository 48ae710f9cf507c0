"""The disk spool: lines the memory bound or a shutdown would drop, kept in segment files.

Layout: ``spool_dir/<service>/w<N>/`` per worker, where ``<service>`` is the ``service``
setting with every character but ``[A-Za-z0-9_-]`` percent-encoded and ``N`` is Sanic's
server number (``SANIC_WORKER_NAME`` ``Sanic-Server-N-M``; 0 for a single process), so a
worker finds its own directory again after a restart. The live owner holds an exclusive
``flock`` on the directory's ``lock`` file for its lifetime (the kernel releases it when the
process ends, however it ends). A directory whose lock can be taken belongs to no live
worker: :meth:`Spool.adopt` moves its segments, by ``rename`` while holding that lock, into
the adopter's directory, so each segment is in exactly one live directory and is replayed
once. A worker that finds its own directory locked (another process with the same service,
spool and server number) waits ``LOCK_WAIT_S``, then takes ``w<N+1024k>``.

A segment ``<created ns>-w<N>.seg`` is append-only: a header (``LUNASPL1`` and the format,
``line-protocol``: the lines exactly as the writer hands them to its storage's ``write``,
InfluxDB line protocol or ClickHouse's ``<table>\t<JSON row>`` lines),
then frames ``<u32 payload bytes><u32 lines><u32 crc32>`` + payload: the end offset of
each line (``u32`` each) and the lines' UTF-8 joined by line breaks, so that replay cuts
batches out of it without touching single lines (and a line break inside a string field
stays inside its line). All integers are little-endian. The CRC covers the first eight head
bytes and the payload, so a torn or corrupted frame is found; reading stops there.
Segments roll over at ``spool_max_bytes / 8`` (4 MiB at most) and are replayed oldest first
by name; ``<name>.ack`` beside a segment records how far replay got.

Durability (``spool_fsync``): a frame is in the kernel's page cache once :meth:`Spool.write`
returns, so a crash of the process (SIGKILL, OOM) loses nothing spooled under any policy.
What a power loss or kernel crash may lose: ``"always"`` nothing spooled (fsync after every
write, and of the directory after a new segment); ``"interval"`` (default) what was spooled
in the last ``FSYNC_INTERVAL_S`` (1 s); ``"never"`` what the kernel had not yet written
back (``vm.dirty_expire_centisecs``, 30 s by default).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import struct
import sys
import threading
import time
import zlib
from array import array
from itertools import accumulate
from operator import add
from pathlib import Path

MAGIC = b"LUNASPL1"
FORMAT = b"line-protocol"
HEADER = MAGIC + FORMAT + b"\n"
FRAME = struct.Struct("<III")
"""Frame head: payload bytes, lines, CRC32 of the first eight head bytes and the payload."""
FRAME_LINES = 1000
MAX_SEGMENT_BYTES = 4 << 20
FSYNC_POLICIES = ("always", "interval", "never")
FSYNC_INTERVAL_S = 1.0
LOCK_WAIT_S = 1.0
LOCK_NAME = "lock"
WORKER_STRIDE = 1024
_ALTERNATES = 64
_SERVER_NUMBER = re.compile(r"-Server-(\d+)-\d+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class SpoolFull(OSError):
    """The spool has no room within ``spool_max_bytes`` (its oldest segment is replaying)."""


def server_number(worker_name: str | None = None) -> int:
    """Sanic's server number of this worker (``Sanic-Server-3-0`` -> 3); 0 without one."""
    name = os.environ.get("SANIC_WORKER_NAME", "") if worker_name is None else worker_name
    match = _SERVER_NUMBER.search(name)
    return int(match[1]) if match else 0


def service_dirname(service: str) -> str:
    """A directory name for ``service``: unsafe characters percent-encoded (UTF-8),
    a long name cut and made unique by a hash.

    >>> service_dirname("../luna sdk")
    '%2E%2E%2Fluna%20sdk'
    """
    name = _UNSAFE.sub(
        lambda m: "".join(f"%{b:02X}" for b in m[0].encode("utf-8", "surrogatepass")), service
    )
    if len(name) > 200:
        digest = hashlib.sha256(service.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[:180]}-{digest}"
    return name


def encode_frames(lines: list[str]) -> list[tuple[bytes, int]]:
    """``lines`` as frames of at most ``FRAME_LINES`` lines each, with their line counts.

    A lone surrogate becomes ``?``, as in the writer's bodies (:func:`~.point.join_lines`).
    """
    frames = []
    for start in range(0, len(lines), FRAME_LINES):
        encoded = [line.encode("utf-8", "replace") for line in lines[start : start + FRAME_LINES]]
        ends = array("I", map(add, accumulate(map(len, encoded)), range(len(encoded))))
        if sys.byteorder == "big":
            ends.byteswap()
        payload = ends.tobytes() + b"\n".join(encoded)
        head = struct.pack("<II", len(payload), len(encoded))
        crc = struct.pack("<I", zlib.crc32(payload, zlib.crc32(head)))
        frames.append((head + crc + payload, len(encoded)))
    return frames


def decode_frame(head: bytes, payload: bytes) -> tuple[array, bytes] | None:
    """The line end offsets and the joined lines of a frame; ``None`` if it is damaged."""
    _, count, crc = FRAME.unpack(head)
    if zlib.crc32(payload, zlib.crc32(head[:8])) != crc or len(payload) < 4 * count:
        return None
    ends = array("I", payload[: 4 * count])
    if sys.byteorder == "big":
        ends.byteswap()
    body = payload[4 * count :]
    if count and ends[-1] != len(body):
        return None
    return ends, body


def try_lock(path: Path, wait_s: float = 0.0) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path`` (created if missing), or ``None``
    if another process holds it for ``wait_s`` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.01)
        except BaseException:
            os.close(fd)
            raise
        else:
            return fd


def ack_path(segment: Path) -> Path:
    """Where replay records how far it got in ``segment``."""
    return segment.with_name(segment.name + ".ack")


def read_ack(segment: Path) -> tuple[int, int]:
    """``(offset of the first frame not fully replayed, lines of it replayed)``."""
    try:
        data = ack_path(segment).read_bytes()
    except OSError:
        return len(HEADER), 0
    if len(data) != 12:
        return len(HEADER), 0
    offset, done = struct.unpack("<QI", data)
    return max(offset, len(HEADER)), done


def frame_lines(segment: Path) -> int:
    """Lines in the intact frames of ``segment`` not yet replayed (reads only frame heads)."""
    offset, done = read_ack(segment)
    total = 0
    try:
        with segment.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            while offset + FRAME.size <= size:
                file.seek(offset)
                length, lines, _ = FRAME.unpack(file.read(FRAME.size))
                offset += FRAME.size + length
                if offset > size:
                    break
                total += lines
    except OSError:
        return 0
    return max(0, total - done)


class Spool:
    """One worker's spool directory, locked for the worker's lifetime.

    Written by the writer's tick (:meth:`write`), drained by :class:`~.replay.Replay`
    (:meth:`take_oldest`, :meth:`finish`). Methods may run in worker threads; one lock
    guards the state.

    >>> spool = Spool.open("/var/spool/luna", "luna-remote-sdk", server_number(), 256 << 20)
    >>> spool.write(lines)
    """

    def __init__(
        self, root: Path, directory: Path, lock_fd: int, max_bytes: int, fsync: str
    ) -> None:
        self.root = root
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = max(4096, min(MAX_SEGMENT_BYTES, max_bytes // 8))
        self._lock_fd: int | None = lock_fd
        self._mutex = threading.Lock()
        self._sealed: dict[str, int] = {}
        self._active_fd: int | None = None
        self._active_name = ""
        self._active_size = 0
        self._last_ns = 0
        self._dirty = False
        self._new_segment = False
        self._unsynced: list[str] = []
        self._synced_at = time.monotonic()
        self.reading: str | None = None
        self.points_spooled = 0
        self.points_dropped = 0
        self.segments_adopted = 0
        for path in directory.glob("*.seg"):
            self._sealed[path.name] = path.stat().st_size
        for path in directory.glob("*.seg.ack"):
            if path.name[: -len(".ack")] not in self._sealed:
                path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, {self.bytes} bytes)"

    @classmethod
    def open(
        cls, spool_dir: str, service: str, number: int, max_bytes: int, fsync: str = "interval"
    ) -> Spool:
        """Create and lock the directory of worker ``number``; ``OSError`` if it cannot be
        created or written."""
        root = Path(spool_dir) / service_dirname(service)
        root.mkdir(parents=True, exist_ok=True)
        for k in range(_ALTERNATES):
            directory = root / f"w{number + k * WORKER_STRIDE}"
            directory.mkdir(exist_ok=True)
            fd = try_lock(directory / LOCK_NAME, LOCK_WAIT_S if k == 0 else 0.0)
            if fd is not None:
                return cls(root, directory, fd, max_bytes, fsync)
        raise OSError(f"{_ALTERNATES} worker directories under {root} are all locked")

    @property
    def bytes(self) -> int:
        """Bytes of the segments in this worker's directory (its own and adopted ones)."""
        return sum(self._sealed.values()) + self._active_size

    @property
    def pending(self) -> bool:
        """Whether any segment waits to be replayed."""
        return bool(self._sealed) or self._active_size > len(HEADER)

    def write(self, lines: list[str]) -> tuple[int, OSError | None]:
        """Append ``lines`` as frames, fsync per the policy: ``(lines written, error)``.

        A frame that fails (disk full, file too large, :class:`SpoolFull`) leaves the segment
        as it was; the lines from that frame on are not written.
        """
        written = 0
        with self._mutex:
            for data, count in encode_frames(lines):
                try:
                    self._append(data)
                except OSError as error:
                    return written, error
                written += count
                self.points_spooled += count
            if self.fsync == "always" and self._active_fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._active_fd)
                self._dirty = False
        return written, None

    def _append(self, data: bytes) -> None:
        if len(data) + len(HEADER) > self.max_bytes:
            raise SpoolFull(f"a frame of {len(data)} bytes exceeds spool_max_bytes")
        self._make_room(len(data) + len(HEADER))
        if self._active_fd is None or self._active_size >= self.segment_bytes:
            self._roll()
        fd = self._active_fd
        assert fd is not None
        start = self._active_size
        try:
            _write_all(fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        self._active_size += len(data)
        self._dirty = True

    def sync_due(self) -> bool:
        """Whether the ``"interval"`` policy owes an fsync now."""
        return (
            self.fsync == "interval"
            and self._dirty
            and time.monotonic() - self._synced_at >= FSYNC_INTERVAL_S
        )

    def sync(self) -> None:
        """fsync what was written since the last sync (the ``"interval"`` policy's work, done
        by the writer's tick in a thread): segments sealed meanwhile, the one being written
        and the directory. Writes go on meanwhile: the mutex is not held during fsync."""
        with self._mutex:
            names, self._unsynced = self._unsynced, []
            fd = os.dup(self._active_fd) if self._active_fd is not None and self._dirty else None
            new_segment, self._new_segment = self._new_segment, False
            self._dirty = False
            self._synced_at = time.monotonic()
        try:
            for name in names:
                with contextlib.suppress(FileNotFoundError):  # replayed and gone meanwhile
                    _fsync_path(self.directory / name, os.O_RDONLY)
            if fd is not None:
                os.fsync(fd)
            if new_segment:
                _fsync_path(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        finally:
            if fd is not None:
                os.close(fd)

    def _make_room(self, size: int) -> None:
        while self.bytes + size > self.max_bytes:
            victims = sorted(name for name in self._sealed if name != self.reading)
            if not victims and self._active_fd is not None:
                self._seal()
                continue
            if not victims:
                raise SpoolFull(f"spool_max_bytes={self.max_bytes} reached in {self.directory}")
            path = self.directory / victims[0]
            self.points_dropped += frame_lines(path)
            self._remove(victims[0])

    def _roll(self) -> None:
        self._seal()
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        name = f"{now:020d}-{self.directory.name}.seg"
        fd = os.open(
            self.directory / name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
            0o644,
        )
        try:
            _write_all(fd, HEADER)
            if self.fsync == "always":
                _fsync_path(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.directory / name)
            raise
        self._active_fd, self._active_name, self._active_size = fd, name, len(HEADER)
        self._new_segment = True

    def _seal(self) -> None:
        """Close the segment being written; it becomes replayable (and, if it was written
        since the last fsync, one for :meth:`sync`)."""
        fd = self._active_fd
        if fd is None:
            return
        os.close(fd)
        if self._dirty:
            self._unsynced.append(self._active_name)
            self._dirty = False
        self._sealed[self._active_name] = self._active_size
        self._active_fd, self._active_name, self._active_size = None, "", 0

    def _remove(self, name: str) -> None:
        self._sealed.pop(name, None)
        path = self.directory / name
        ack_path(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def take_oldest(self) -> Path | None:
        """The oldest segment, sealed first if it is being written; now :attr:`reading`."""
        with self._mutex:
            if not self._sealed and self._active_size > len(HEADER):
                self._seal()
            if not self._sealed:
                return None
            self.reading = min(self._sealed)
            return self.directory / self.reading

    def finish(self, segment: Path) -> None:
        """Delete a segment whose every line was written or rejected (or found damaged)."""
        with self._mutex:
            self._remove(segment.name)
            if self.reading == segment.name:
                self.reading = None

    def adopt(self) -> int:
        """Move the segments of directories no live worker holds into this one; their count."""
        moved = 0
        for other in sorted(self.root.iterdir()):
            if other == self.directory or not other.is_dir():
                continue
            try:
                fd = try_lock(other / LOCK_NAME)
            except OSError:
                continue
            if fd is None:
                continue
            try:
                for segment in sorted(other.glob("*.seg")):
                    ack = ack_path(segment)
                    if ack.exists():
                        os.rename(ack, self.directory / ack.name)
                    os.rename(segment, self.directory / segment.name)
                    with self._mutex:
                        self._sealed[segment.name] = (self.directory / segment.name).stat().st_size
                    moved += 1
            finally:
                os.close(fd)
        self.segments_adopted += moved
        return moved

    def close(self) -> None:
        """Seal the segment being written, fsync (unless ``"never"``), release the lock."""
        try:
            with self._mutex:
                self._seal()
            if self.fsync != "never":
                self.sync()
        finally:
            with self._mutex:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None


def _fsync_path(path: Path, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
