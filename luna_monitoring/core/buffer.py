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
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .point import LineEncoder, Point, join_lines


class Buffer:
    """Points of one worker, oldest first; every point ends up in exactly one counter.

    ``written + rejected + dropped + encoder.points_invalid + encoder.points_without_fields
    + len(self)`` plus the lines handed to the spool is the number of points ever appended.
    """

    __slots__ = (
        "_lines",
        "_owed",
        "_raw",
        "_room",
        "_shed",
        "_wire",
        "dropped",
        "encoder",
        "max_points",
        "rejected",
        "spill",
        "written",
    )

    def __init__(self, max_points: int, encoder: Any = None) -> None:
        """``encoder``: a ``LineEncoder`` (the default) or another with its ``encode_lines``
        and counters (``storages.make_encoder``)."""
        self.max_points = max_points
        self._raw: deque[Point] = deque()
        self._lines: deque[str] = deque()
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

    def _overflow(self) -> None:
        if self._owed < len(self._wire):
            self._owed += 1
            self._room += 1
        elif self._lines:
            self._lines.popleft()
            self._room += 1
            self.dropped += 1
        else:
            self._raw.popleft()
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._raw) + len(self._lines) + len(self._wire)

    @property
    def lines(self) -> int:
        """Encoded lines waiting to be written (including those on the wire)."""
        return len(self._lines) + len(self._wire)

    def take(self, limit: int) -> list[Point]:
        """Remove and return the oldest raw points, at most ``limit``."""
        pop = self._raw.popleft
        return [pop() for _ in range(min(limit, len(self._raw)))]

    @property
    def raw(self) -> int:
        """Raw points waiting to be taken."""
        return len(self._raw)

    def add(self, points: list[Point]) -> None:
        """Encode ``points`` behind the waiting lines, then shed the oldest beyond the bound."""
        self._lines.extend(self.encoder.encode_lines(points))
        self._trim()

    def _trim(self) -> None:
        excess = len(self) - self._owed - self.max_points
        if excess > 0:
            owe = min(excess, len(self._wire) - self._owed)
            self._owed += owe
            excess -= owe
            count = min(excess, len(self._lines))
            self._shed_oldest(count)
            raw = self._raw
            for _ in range(excess - count):
                raw.popleft()
            self.dropped += excess - count
        self._set_room()

    def _shed_oldest(self, count: int) -> None:
        pop = self._lines.popleft
        if self.spill:
            self._shed.extend([pop() for _ in range(count)])
        else:
            for _ in range(count):
                pop()
            self.dropped += count

    def _set_room(self) -> None:
        self._room = self.max_points - len(self._lines) - len(self._wire) + self._owed

    def begin(self, limit: int) -> tuple[bytes, int]:
        """The body of the oldest lines (at most ``limit``) and their count, now on the wire."""
        pop = self._lines.popleft
        self._wire = wire = [pop() for _ in range(min(limit, len(self._lines)))]
        return join_lines(wire), len(wire)

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
        pop = self._lines.popleft
        shed.extend([pop() for _ in range(min(max(0, excess), len(self._lines)))])
        self._set_room()
        return shed

    def restore(self, lines: list[str]) -> None:
        """Put back, as the oldest, lines :meth:`shed` gave that the spool could not take;
        beyond the bound they are dropped (``spill`` off) or shed again."""
        self._lines.extendleft(reversed(lines))
        self._trim()
