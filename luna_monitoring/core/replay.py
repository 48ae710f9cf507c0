"""Replay of the disk spool: spooled lines back to the storage, oldest segment first.

:class:`Replay` is a source of lines for the writer's delivery loop, as the buffer is
(``lines``, ``begin``, ``settle``, ``keep``): the writer applies the same batch size, retries,
400 and 413 rules to both. It holds the frames of one segment at a time, at most about one
batch of lines. After every settled batch it records in the segment's ``.ack`` file how far
replay got (no fsync), and deletes the segment once every line of it was written or
rejected. A crash between a write and its ``.ack`` sends that batch again after the restart:
the same points with the same timestamps, which InfluxDB stores once.

A frame that is torn (the file ends inside it) or corrupted (its CRC does not match) ends
the segment: it and everything after it in that segment are skipped and counted
(``spool_corrupt_frames``, ``spool_corrupt_bytes``); the other segments are replayed.
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from collections import deque
from pathlib import Path
from typing import BinaryIO

from .spool import FRAME, HEADER, Spool, ack_path, decode_frame, read_ack


class _Frame:
    """A frame read: its place in the segment, its lines, and how many were settled."""

    __slots__ = ("body", "done", "end", "ends", "start")

    def __init__(self, start: int, end: int, ends: array, body: bytes, done: int) -> None:
        self.start, self.end, self.ends, self.body, self.done = start, end, ends, body, done

    def cut(self, first: int, count: int) -> memoryview:
        """Lines ``first`` to ``first + count`` of the frame, joined."""
        ends = self.ends
        begin = ends[first - 1] + 1 if first else 0
        return memoryview(self.body)[begin : ends[first + count - 1]]


class Replay:
    """Spooled lines on their way back, a batch at a time.

    >>> replay = Replay(spool)
    >>> replay.fill(5000)          # in a worker thread: reads frames
    >>> body, count = replay.begin(5000)
    >>> replay.settle(count)       # written: the .ack advances, a finished segment goes
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._frames: deque[_Frame] = deque()
        self._lines = 0
        self._segment: Path | None = None
        self._file: BinaryIO | None = None
        self._ack_fd: int | None = None
        self._size = 0
        self._offset = 0
        self._skip = 0
        self._at_end = False
        self._wire = 0
        self.written = 0
        self.rejected = 0
        self.corrupt_frames = 0
        self.corrupt_bytes = 0
        self.damaged: list[str] = []
        """Damage found since the writer last looked (one text per damaged segment)."""

    @property
    def lines(self) -> int:
        """Lines read and not yet settled."""
        return self._lines

    def fill(self, limit: int) -> None:
        """Read frames until ``limit`` lines wait, the segment ends or the spool is empty."""
        while self._lines < limit:
            if self._segment is None and not self._open_next():
                return
            if not self._at_end:
                self._read_frame()
            elif self._frames:
                return  # the segment's last lines are still to be settled
            else:
                self._finish()

    def _open_next(self) -> bool:
        segment = self.spool.take_oldest()
        if segment is None:
            return False
        self._segment = segment
        self._file = file = segment.open("rb")
        self._size = os.fstat(file.fileno()).st_size
        self._offset, self._skip = read_ack(segment)
        self._at_end = False
        if file.read(len(HEADER)) != HEADER:
            self._damaged(0)
        return True

    def _read_frame(self) -> None:
        file, offset = self._file, self._offset
        assert file is not None
        if offset >= self._size:
            self._at_end = True
            return
        file.seek(offset)
        head = file.read(FRAME.size)
        if len(head) < FRAME.size:
            return self._damaged(offset)
        length, count, _ = FRAME.unpack(head)
        end = offset + FRAME.size + length
        if end > self._size:
            return self._damaged(offset)
        decoded = decode_frame(head, file.read(length))
        if decoded is None:
            return self._damaged(offset)
        skip, self._skip = min(self._skip, count), 0
        self._offset = end
        if skip < count:
            self._frames.append(_Frame(offset, end, *decoded, skip))
            self._lines += count - skip

    def _damaged(self, offset: int) -> None:
        self.corrupt_frames += 1
        self.corrupt_bytes += self._size - offset
        self.damaged.append(
            f"{self._segment} is damaged at byte {offset} of {self._size} (a torn or corrupted "
            f"frame): its last {self._size - offset} bytes are skipped"
        )
        self._at_end = True

    def begin(self, limit: int) -> tuple[bytes, int]:
        """The body of the oldest lines read (at most ``limit``) and their count."""
        count = left = min(limit, self._lines)
        parts = []
        for frame in self._frames:
            if not left:
                break
            take = min(left, len(frame.ends) - frame.done)
            parts.append(frame.cut(frame.done, take))
            left -= take
        self._wire = count
        return b"\n".join(parts), count

    def settle(self, written: int, rejected: int = 0) -> None:
        """The lines on the wire reached the server: record it; a finished segment goes."""
        count, self._wire = self._wire, 0
        self._lines -= count
        self.written += written
        self.rejected += rejected
        frames = self._frames
        while count:
            frame = frames[0]
            take = min(count, len(frame.ends) - frame.done)
            frame.done += take
            count -= take
            if frame.done == len(frame.ends):
                frames.popleft()
        if not frames and (self._at_end or self._offset >= self._size):
            self._finish()
        else:
            self._write_ack()

    def keep(self) -> None:
        """The write failed: the lines stay for the retry."""
        self._wire = 0

    def _write_ack(self) -> None:
        assert self._segment is not None
        frames = self._frames
        offset, done = (frames[0].start, frames[0].done) if frames else (self._offset, 0)
        with contextlib.suppress(OSError):
            if self._ack_fd is None:
                self._ack_fd = os.open(
                    ack_path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            os.pwrite(self._ack_fd, struct.pack("<QI", offset, done), 0)

    def _finish(self) -> None:
        segment = self._segment
        self.close()
        if segment is not None:
            self.spool.finish(segment)

    def close(self) -> None:
        """Close the segment being read (it stays, with its ``.ack``, for the next start)."""
        if self._file is not None:
            self._file.close()
        if self._ack_fd is not None:
            os.close(self._ack_fd)
        self._file = self._ack_fd = self._segment = None
        self._frames.clear()
        self._lines = self._wire = 0
