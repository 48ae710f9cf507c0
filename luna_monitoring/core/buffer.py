"""The bounded per-worker buffer: raw points from the request path, encoded lines waiting.

Points age in one direction: ``append`` (a bound ``deque.append``, the whole request-path
cost) -> :meth:`Buffer.take` -> :meth:`Buffer.add` encodes them into lines -> the writer
sends the oldest lines with :meth:`Buffer.begin` and reports the outcome with
:meth:`Buffer.settle` or :meth:`Buffer.keep`. Raw points and lines together are bounded by
``max_points``; beyond it the oldest are dropped and counted.

The bound is applied when points are added (the writer's tick, every 50 ms at most), so the
raw points appended since then come on top. Lines on the wire cannot be taken back: when
they are the oldest and must go, the drop is owed and made only if their write fails (if it
succeeds they were delivered); so one batch may also come on top while its write is in flight.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from .point import LineEncoder, Point, join_lines


class Buffer:
    """Points of one worker, oldest first; every point ends up in exactly one counter.

    ``written + rejected + dropped + encoder.points_invalid + encoder.points_without_fields
    + len(self)`` is the number of points ever appended.
    """

    __slots__ = (
        "_lines",
        "_owed",
        "_raw",
        "_wire",
        "append",
        "dropped",
        "encoder",
        "max_points",
        "rejected",
        "written",
    )

    def __init__(self, max_points: int, dialect: str = "influxdb") -> None:
        self.max_points = max_points
        self._raw: deque[Point] = deque()
        self.append = self._raw.append
        """Buffer one point (the request path: O(1), no I/O, thread-safe)."""
        self._lines: deque[str] = deque()
        self.encoder = LineEncoder(dialect)
        self._wire = 0
        self._owed = 0
        self.written = 0
        self.rejected = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._raw) + len(self._lines)

    @property
    def lines(self) -> int:
        """Encoded lines waiting to be written (including those on the wire)."""
        return len(self._lines)

    def take(self, limit: int) -> list[Point]:
        """Remove and return the oldest raw points, at most ``limit``."""
        pop = self._raw.popleft
        return [pop() for _ in range(min(limit, len(self._raw)))]

    @property
    def raw(self) -> int:
        """Raw points waiting to be taken."""
        return len(self._raw)

    def add(self, points: list[Point]) -> None:
        """Encode ``points`` behind the waiting lines, then drop the oldest beyond the bound."""
        self._lines.extend(self.encoder.encode_lines(points))
        self._trim()

    def _trim(self) -> None:
        excess = len(self) - self._owed - self.max_points
        if excess <= 0:
            return
        owe = min(excess, self._wire - self._owed)
        self._owed += owe
        excess -= owe
        lines = self._lines
        count = min(excess, len(lines) - self._wire)
        lines.rotate(-self._wire)
        for _ in range(count):
            lines.popleft()
        lines.rotate(self._wire)
        raw = self._raw
        for _ in range(excess - count):
            raw.popleft()
        self.dropped += excess

    def begin(self, limit: int) -> tuple[bytes, int]:
        """The body of the oldest lines (at most ``limit``) and their count, now on the wire."""
        count = min(limit, len(self._lines))
        self._wire = count
        return join_lines(islice(self._lines, count)), count

    def settle(self, written: int, rejected: int = 0) -> None:
        """The lines on the wire reached the server: ``written`` stored, ``rejected`` refused."""
        pop = self._lines.popleft
        for _ in range(self._wire):
            pop()
        self.written += written
        self.rejected += rejected
        self._wire = self._owed = 0

    def keep(self) -> None:
        """The write failed: its lines stay, except those owed to the bound, which are dropped."""
        pop = self._lines.popleft
        for _ in range(self._owed):
            pop()
        self.dropped += self._owed
        self._wire = self._owed = 0
