"""Unique nanosecond timestamps.

InfluxDB keeps one point per (measurement, tag set, timestamp): a second point with the
same three silently replaces the first. Every timestamp a worker hands out comes from one
:class:`UniqueClock`, which never returns the same value twice. Workers of one service get
disjoint residues (``offset`` modulo ``stride``), so their timestamps never collide either.
A value is the wall clock with its low bits replaced by the residue: it may be up to
``stride - 1`` ns ahead of the wall clock (1 µs for the workers' stride).

Handlers' threads (``asyncio.to_thread``) share their worker's clock. :meth:`UniqueClock.now_ns`
needs no lock for that: between reading the last value and storing the new one there is no
call and no backward jump, the only places where CPython's GIL hands over to another thread
(``tests/test_clock.py`` checks it with eight threads switching every microsecond).

Durations (``execution_time``) are measured on the monotonic clock in whole nanoseconds:
:func:`seconds_since` a ``perf_counter_ns()`` start.
"""

from __future__ import annotations

from time import perf_counter_ns, time_ns

from .schema import INT64_MAX
from .speedups import speedups


def seconds_since(start: int) -> float:
    """The seconds since ``start`` (a ``perf_counter_ns()``): the float nearest to a whole
    number of nanoseconds, which the encoder writes without a binary remainder (``0.000123``,
    not ``0.00012300000000000001``)."""
    return (perf_counter_ns() - start) / 1e9


class PythonUniqueClock:
    """Strictly increasing wall-clock nanoseconds, all congruent to ``offset`` mod ``stride``.

    ``stride`` is a power of two, so setting the residue is a positive bit mask and an or:
    the cheapest arithmetic on the multi-digit ints that nanosecond times are.
    """

    __slots__ = ("_last", "_mask", "_offset", "_stride")

    def __init__(self, offset: int = 0, stride: int = 1) -> None:
        if stride < 1 or not 0 <= offset < stride:
            raise ValueError(f"need 0 <= offset < stride, got offset={offset}, stride={stride}")
        if stride & (stride - 1):
            raise ValueError(f"stride must be a power of two, got {stride}")
        self._offset = offset
        self._stride = stride
        self._mask = INT64_MAX & ~(stride - 1)
        self._last = 0

    def now_ns(self) -> int:
        """The current time in ns, greater than every value returned before."""
        now = (time_ns() & self._mask) | self._offset
        last = self._last
        if now <= last:
            now = last + self._stride
        self._last = now
        return now


UniqueClock: type[PythonUniqueClock] = (
    PythonUniqueClock if speedups is None else speedups.UniqueClock
)
"""The worker clock: compiled (``core/_speedups.c``, the same arithmetic on 64-bit ints) when
built, else :class:`PythonUniqueClock`."""
