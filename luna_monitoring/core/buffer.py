"""The bounded per-worker buffer: raw points from the request path, encoded lines waiting.

Points age in one direction: :meth:`Buffer.append` (the request path) -> :meth:`Buffer.take`
-> :meth:`Buffer.add` encodes them into lines -> the writer sends the oldest lines with
:meth:`Buffer.begin` and reports the outcome with :meth:`Buffer.settle` or
:meth:`Buffer.keep`. Raw points and lines together are bounded by ``max_points`` at every
instant: ``append`` checks the bound (one comparison) and makes room by dropping the oldest
point, counted. Lines on the wire cannot be taken back: when they are the oldest and must go,
the drop is owed and made only if their write fails (if it succeeds they were delivered); so
one batch may come on top of the bound while its write is in flight.

With ``spill`` set (a disk spool is open), the lines the bound sheds at the writer's tick or
after a failed write are not dropped but kept for the spool (:meth:`Buffer.shed`), and the
writer moves the oldest lines to the spool before the bound is reached. Only ``append``
still drops: the request path does no I/O.

Waiting lines are held in three parts, oldest first: ``_lines`` (one ``str`` a line),
``_packed`` (blocks of ``pack_lines`` lines joined by ``\n``, which no line holds since the
encoders escape it; zlib level 1: ~4 times smaller) and ``_tail`` (a :class:`LineQueue`,
where :meth:`Buffer.add` puts new lines and whose oldest are taken as one slice). Only
beyond ``pack_after`` lines in the tail does ``add`` pack its oldest into blocks, so a sender
that keeps up never packs; the oldest lines are taken from ``_lines``, then from a block
unpacked into it, then from the tail. ``append`` never unpacks: a point it drops from a block
is counted as skipped, and the skipped lines are left out when the block is unpacked.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import Any

from .point import LineEncoder, Point, join_lines
from .speedups import compile_methods, speedups

PACK_LINES = 1000
"""Lines a block: one compression holds the event loop ~1 ms (~1 µs a line)."""


class Buffer:
    """Points of one worker, oldest first; every point ends up in exactly one counter.

    ``written + rejected + dropped + encoder.points_invalid + encoder.points_without_fields
    + len(self)`` plus the lines handed to the spool is the number of points ever appended.
    """

    __slots__ = (
        "_lines",
        "_owed",
        "_packed",
        "_packed_lines",
        "_raw",
        "_room",
        "_shed",
        "_skip",
        "_tail",
        "_wire",
        "dropped",
        "encoder",
        "max_points",
        "pack_after",
        "pack_lines",
        "packs",
        "rejected",
        "spill",
        "written",
    )

    def __init__(
        self,
        max_points: int,
        encoder: Any = None,
        *,
        pack_after: int | None = None,
        pack_lines: int = PACK_LINES,
    ) -> None:
        """``encoder``: a ``LineEncoder`` (the default) or another with its ``encode_lines``
        and counters (``storages.make_encoder``). The tail's oldest ``pack_lines`` are packed
        while it holds ``pack_after`` more (default ``pack_after``: a quarter of the bound)."""
        self.max_points = max_points
        self.pack_after = max_points // 4 if pack_after is None else pack_after
        self.pack_lines = pack_lines
        self.packs = 0
        """Blocks packed so far."""
        self._raw: deque[Point] = deque()
        self._lines: deque[str] = deque()
        self._packed: deque[tuple[bytes, int]] = deque()
        self._packed_lines = 0
        self._skip = 0
        self._tail = LineQueue()
        self._wire: list[str] = []
        self._shed: list[str] = []
        self._room = max_points
        self.encoder = LineEncoder() if encoder is None else encoder
        self._owed = 0
        self.written = 0
        self.rejected = 0
        self.dropped = 0
        self.spill = False

    def append(self, point: Point | tuple) -> None:
        """Buffer one point (the request path: O(1), no I/O); at the bound the oldest goes."""
        if len(self._raw) >= self._room:
            self._overflow()
        self._raw.append(point)

    def extend(self, points: list[Point | tuple]) -> None:
        """Buffer the points of one request, oldest first, as :meth:`append` would."""
        if len(self._raw) + len(points) <= self._room:
            self._raw.extend(points)
        else:
            for point in points:
                self.append(point)

    def _overflow(self) -> None:
        if self._owed < len(self._wire):
            self._owed += 1
            self._room += 1
        elif self._waiting():
            self._drop(1)
            self._room += 1
        else:
            self._raw.popleft()
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._raw) + self._waiting() + len(self._wire)

    def _waiting(self) -> int:
        return len(self._lines) + self._packed_lines + len(self._tail)

    @property
    def lines(self) -> int:
        """Encoded lines waiting to be written (including those on the wire)."""
        return self._waiting() + len(self._wire)

    def take(self, limit: int) -> list[Point]:
        """Remove and return the oldest raw points, at most ``limit``."""
        return _pop_left(self._raw, limit)

    @property
    def raw(self) -> int:
        """Raw points waiting to be taken."""
        return len(self._raw)

    def add(self, points: list[Point]) -> None:
        """Encode ``points`` behind the waiting lines, shed the oldest beyond the bound, then
        pack the oldest of the tail beyond ``pack_after``."""
        self._tail.extend(self.encoder.encode_lines(points))
        self._trim()
        tail, size = self._tail, self.pack_lines
        while len(tail) >= self.pack_after + size:
            text = "\n".join(tail.take(size))
            self._packed.append((zlib.compress(text.encode("utf-8", "surrogatepass"), 1), size))
            self._packed_lines += size
            self.packs += 1

    def _unpack(self) -> None:
        """Move the lines of the oldest block, but those skipped, to ``_lines``."""
        data, count = self._packed.popleft()
        lines = zlib.decompress(data).decode("utf-8", "surrogatepass").split("\n")
        self._lines.extend(lines[self._skip :])
        self._packed_lines -= count - self._skip
        self._skip = 0

    def _pop_oldest(self, count: int) -> list[str]:
        """Remove and return the oldest ``count`` waiting lines (at most all)."""
        lines = self._lines
        if not lines and not self._packed:  # a sender that keeps up: one slice of the tail
            return self._tail.take(count)
        while len(lines) < count and self._packed:
            self._unpack()
        out = _pop_left(lines, count)
        out.extend(self._tail.take(count - len(out)))
        return out

    def _drop(self, count: int) -> None:
        """Drop the oldest ``count`` waiting lines, counted; blocks are skipped, not unpacked."""
        self.dropped += count
        lines, packed = self._lines, self._packed
        while count and lines:
            lines.popleft()
            count -= 1
        while count and packed:
            skip = min(count, packed[0][1] - self._skip)
            self._skip += skip
            self._packed_lines -= skip
            count -= skip
            if self._skip == packed[0][1]:
                packed.popleft()
                self._skip = 0
        self._tail.drop(count)

    def _trim(self) -> None:
        excess = len(self) - self._owed - self.max_points
        if excess > 0:
            owe = min(excess, len(self._wire) - self._owed)
            self._owed += owe
            excess -= owe
            count = min(excess, self._waiting())
            if self.spill:
                self._shed.extend(self._pop_oldest(count))
            else:
                self._drop(count)
            raw = self._raw
            for _ in range(excess - count):
                raw.popleft()
            self.dropped += excess - count
        self._set_room()

    def _set_room(self) -> None:
        self._room = self.max_points - self._waiting() - len(self._wire) + self._owed

    def begin(self, limit: int) -> tuple[bytes, int]:
        """The body of the oldest lines (at most ``limit``) and their count, now on the wire."""
        self._wire = wire = self._pop_oldest(limit)
        return join_lines(wire), len(wire)

    def peek(self, limit: int) -> list[str]:
        """The oldest waiting lines, at most ``limit``, left where they are: what
        :meth:`begin` would take next, except that the list stops at a packed block."""
        ahead = list(islice(self._lines, limit))
        if len(ahead) < limit and not self._packed:
            ahead.extend(self._tail.head(limit - len(ahead)))
        return ahead

    def settle(self, written: int, rejected: int = 0) -> None:
        """The lines on the wire reached the server: ``written`` stored, ``rejected`` refused."""
        self.written += written
        self.rejected += rejected
        self._wire = []
        self._owed = 0
        self._set_room()

    def keep(self) -> None:
        """The write failed: its lines stay, except those owed to the bound, which are shed."""
        wire, owed = self._wire, self._owed
        if owed:
            if self.spill:
                self._shed.extend(wire[:owed])
            else:
                self.dropped += owed
        self._lines.extendleft(reversed(wire[owed:]))
        self._wire = []
        self._owed = 0
        self._set_room()

    def shed(self, keep: int) -> list[str]:
        """Remove and return the lines shed by the bound, then the oldest lines not on the
        wire until at most ``keep`` points are held (for the spool)."""
        shed, self._shed = self._shed, []
        excess = len(self) - self._owed - keep
        shed.extend(self._pop_oldest(max(0, excess)))
        self._set_room()
        return shed

    def restore(self, lines: list[str]) -> None:
        """Put back, as the oldest, lines :meth:`shed` gave that the spool could not take;
        beyond the bound they are dropped (``spill`` off) or shed again."""
        self._lines.extendleft(reversed(lines))
        self._trim()


class LineQueue:
    """Lines, oldest first, in one list with a read index: the oldest are taken as one slice
    (a copy at C speed, or the list itself when all go) instead of one ``popleft`` each; the
    read part is cut off once it is half of the list."""

    __slots__ = ("_items", "_start")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._start = 0

    def __len__(self) -> int:
        return len(self._items) - self._start

    def __iter__(self) -> Iterator[str]:
        return iter(self._items[self._start :])

    def extend(self, lines: list[str]) -> None:
        """Add ``lines`` as the newest."""
        self._items.extend(lines)

    def take(self, count: int) -> list[str]:
        """Remove and return the oldest ``count`` lines (at most all)."""
        items, start = self._items, self._start
        if start == 0 and count >= len(items):
            self._items = []
            return items
        out = items[start : start + count]
        self._advance(len(out))
        return out

    def drop(self, count: int) -> None:
        """Remove the oldest ``count`` lines (at most all)."""
        self._advance(min(count, len(self)))

    def head(self, count: int) -> list[str]:
        """The oldest ``count`` lines (at most all), left where they are."""
        return self._items[self._start : self._start + count]

    def _advance(self, count: int) -> None:
        self._start += count
        if self._start == len(self._items):
            self._items = []
            self._start = 0
        elif self._start * 2 > len(self._items):
            del self._items[: self._start]
            self._start = 0


COMPILED_METHODS = ("append", "extend")
"""Buffer's methods with a compiled twin: the request path's, while the bound leaves room."""

if speedups is not None:
    speedups.setup_buffer(Buffer)
    compile_methods(Buffer, COMPILED_METHODS)


def _pop_left(items: deque, count: int) -> list:
    """Remove and return the oldest ``count`` of ``items`` (at most all), all at once when
    that is all of them (a copy at C speed instead of one ``popleft`` each)."""
    if count >= len(items):
        out = list(items)
        items.clear()
        return out
    pop = items.popleft
    return [pop() for _ in range(count)]
