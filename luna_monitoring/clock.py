"""Unique nanosecond timestamps.

InfluxDB keeps one point per (measurement, tag set, timestamp): a second point with the
same three silently replaces the first. Every timestamp a worker hands out comes from one
:class:`UniqueClock`, which never returns the same value twice. Workers of one service get
disjoint residues (``offset`` modulo ``stride``), so their timestamps never collide either.
"""

from __future__ import annotations

from time import time_ns


class UniqueClock:
    """Strictly increasing wall-clock nanoseconds, all congruent to ``offset`` mod ``stride``.

    ``stride`` is a power of two, so rounding down to the residue is a bit mask.
    """

    __slots__ = ("_last", "_mask", "_offset", "_stride")

    def __init__(self, offset: int = 0, stride: int = 1) -> None:
        if stride < 1 or not 0 <= offset < stride:
            raise ValueError(f"need 0 <= offset < stride, got offset={offset}, stride={stride}")
        if stride & (stride - 1):
            raise ValueError(f"stride must be a power of two, got {stride}")
        self._offset = offset
        self._stride = stride
        self._mask = ~(stride - 1)
        self._last = 0

    def now_ns(self) -> int:
        """The current time in ns, greater than every value returned before."""
        now = ((time_ns() - self._offset) & self._mask) + self._offset
        if now <= self._last:
            now = self._last + self._stride
        self._last = now
        return now
