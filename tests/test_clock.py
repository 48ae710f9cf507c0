"""Unique nanosecond timestamps."""

from __future__ import annotations

import itertools
import sys
import threading
import time

import pytest

from luna_monitoring.core import clock as clock_module
from luna_monitoring.core.clock import PythonUniqueClock

COMPILED = clock_module.UniqueClock if clock_module.speedups is not None else None


@pytest.fixture(
    params=[COMPILED, PythonUniqueClock], ids=["compiled", "python"], name="UniqueClock"
)
def unique_clock(request: pytest.FixtureRequest) -> type:
    """Every test twice: the compiled clock (``core/_speedups.c``) and the pure-Python one."""
    if request.param is None:
        pytest.skip("the compiled clock is not built (tests/test_speedups.py says why)")
    return request.param


def test_strictly_increasing(UniqueClock):
    """No value is ever handed out twice, however fast the calls."""
    clock = UniqueClock()
    values = [clock.now_ns() for _ in range(100_000)]
    assert all(b > a for a, b in itertools.pairwise(values))


def test_close_to_wall_clock(UniqueClock):
    """Values are wall-clock time in ns."""
    assert abs(UniqueClock().now_ns() - time.time_ns()) < 1_000_000_000


def test_workers_get_disjoint_residues(UniqueClock):
    """Two workers of one service never produce the same timestamp."""
    a, b = UniqueClock(0, 2), UniqueClock(1, 2)
    first = {a.now_ns() for _ in range(10_000)}
    second = {b.now_ns() for _ in range(10_000)}
    assert not first & second
    assert {v % 2 for v in first} == {0} and {v % 2 for v in second} == {1}


@pytest.mark.parametrize(("offset", "stride"), [(0, 0), (2, 2), (-1, 3)])
def test_bad_offset_or_stride(UniqueClock, offset, stride):
    """offset must lie in 0..stride-1."""
    with pytest.raises(ValueError, match="need 0 <= offset < stride"):
        UniqueClock(offset, stride)


def test_stride_is_a_power_of_two(UniqueClock):
    """A stride that is not a power of two is refused."""
    with pytest.raises(ValueError, match="power of two"):
        UniqueClock(1, 3)


def test_residue_kept_for_large_stride(UniqueClock):
    """With the workers' stride every value keeps its worker's residue and increases."""
    clock = UniqueClock(1000, 1024)
    values = [clock.now_ns() for _ in range(10_000)]
    assert {v % 1024 for v in values} == {1000}
    assert all(b > a for a, b in itertools.pairwise(values))


def test_threads_sharing_a_clock_never_get_the_same_value(UniqueClock):
    """Handlers' threads share their worker's clock: every value is still unique."""
    clock = UniqueClock(3, 1024)
    values: list[list[int]] = [[] for _ in range(8)]

    def take(out: list[int]) -> None:
        now_ns = clock.now_ns
        for _ in range(50_000):
            out.append(now_ns())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as CPython can
    try:
        threads = [threading.Thread(target=take, args=(out,)) for out in values]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    every = [value for out in values for value in out]
    assert len(set(every)) == len(every) == 400_000
    assert all(value % 1024 == 3 for value in every)


def test_seconds_since_is_whole_nanoseconds_of_the_monotonic_clock():
    start = time.perf_counter_ns() - 123_456_789
    before = time.perf_counter_ns()
    seconds = clock_module.seconds_since(start)
    after = time.perf_counter_ns()
    assert (before - start) / 1e9 <= seconds <= (after - start) / 1e9
    assert round(seconds * 1e9) / 1e9 == seconds
    assert len(repr(seconds)) <= len("0.123456789") + 3  # no binary remainder
