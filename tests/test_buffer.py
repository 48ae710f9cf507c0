"""The bounded buffer: request-path append, encoding, oldest-first drops, exact accounting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from luna_monitoring.core.buffer import Buffer
from luna_monitoring.core.point import Point


def point(i: int) -> Point:
    return Point("m", 1_700_000_000_000_000_000 + i, {"k": "v"}, {"i": i})


def fill(buffer: Buffer, start: int, count: int) -> None:
    for i in range(start, start + count):
        buffer.append(point(i))
    buffer.add(buffer.take(count))


def front(buffer: Buffer, n: int = 10_000) -> list[int]:
    """The ``i`` fields of the oldest lines (puts them on the wire)."""
    body, _ = buffer.begin(n)
    return [int(line.split("i=")[1].split("i ")[0]) for line in body.decode().splitlines()]


def accounted(buffer: Buffer) -> int:
    encoder = buffer.encoder
    return (
        buffer.written
        + buffer.rejected
        + buffer.dropped
        + encoder.points_invalid
        + encoder.points_without_fields
        + len(buffer)
    )


def test_the_bound_holds_at_every_append() -> None:
    """400 appends between two ticks with max 100: never more than 100 held, 300 dropped."""
    buffer = Buffer(100)
    for i in range(400):
        buffer.append(point(i))
        assert len(buffer) <= 100
    assert (len(buffer), buffer.dropped) == (100, 300)
    buffer.add(buffer.take(1000))
    assert front(buffer) == list(range(300, 400))


def test_append_drops_the_oldest_line_before_any_raw_point() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 10)
    for i in range(10, 13):
        buffer.append(point(i))
    assert (len(buffer), buffer.dropped) == (10, 3)
    buffer.add(buffer.take(10))
    assert front(buffer) == list(range(3, 13))


def test_append_owes_lines_on_the_wire_first() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 10)
    front(buffer, 10)
    for i in range(10, 13):
        buffer.append(point(i))
    assert (len(buffer), buffer.dropped) == (13, 0)
    buffer.keep()
    assert (len(buffer), buffer.dropped) == (10, 3)


def test_take_returns_at_most_limit_oldest_first() -> None:
    buffer = Buffer(10)
    for i in range(3):
        buffer.append(point(i))
    assert [p.fields["i"] for p in buffer.take(2)] == [0, 1]
    assert buffer.raw == 1
    assert [p.fields["i"] for p in buffer.take(5)] == [2]
    assert buffer.take(5) == []


def test_add_encodes_lines() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 2)
    assert buffer.lines == 2
    assert buffer.begin(10) == (
        b"m,k=v i=0i 1700000000000000000\nm,k=v i=1i 1700000000000000001",
        2,
    )


def test_unencodable_points_are_counted_not_buffered() -> None:
    buffer = Buffer(10)
    buffer.add([Point("m", 1, {}, {"x": None}), Point("m", 2, {}, {"x": object()})])
    buffer.add([Point("m", None, {}, {"x": 1})])
    encoder = buffer.encoder
    assert (len(buffer), encoder.points_without_fields, encoder.points_invalid) == (0, 2, 1)
    assert encoder.fields_dropped == 1


def test_beyond_bound_the_oldest_are_dropped() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 25)
    assert (len(buffer), buffer.dropped) == (10, 15)
    assert front(buffer) == list(range(15, 25))


def test_settle_removes_the_lines_on_the_wire() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 5)
    assert front(buffer, 3) == [0, 1, 2]
    buffer.settle(2, 1)
    assert (buffer.written, buffer.rejected, len(buffer)) == (2, 1, 2)
    assert front(buffer) == [3, 4]


def test_keep_leaves_the_lines_for_a_retry() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 5)
    front(buffer, 3)
    buffer.keep()
    assert front(buffer) == [0, 1, 2, 3, 4]


def test_drop_of_lines_on_the_wire_is_owed_until_the_write_fails() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 10)
    front(buffer, 5)
    fill(buffer, 10, 3)
    assert (len(buffer), buffer.dropped) == (13, 0)
    buffer.keep()
    assert (len(buffer), buffer.dropped) == (10, 3)
    assert front(buffer) == list(range(3, 13))


def test_owed_lines_written_after_all_are_not_dropped() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 10)
    front(buffer, 5)
    fill(buffer, 10, 3)
    buffer.settle(5)
    assert (buffer.written, buffer.dropped, len(buffer)) == (5, 0, 8)
    assert front(buffer) == list(range(5, 13))


def test_excess_beyond_the_wire_drops_the_next_oldest() -> None:
    buffer = Buffer(10)
    fill(buffer, 0, 10)
    front(buffer, 2)
    fill(buffer, 10, 5)
    assert (len(buffer), buffer.dropped) == (12, 3)
    buffer.keep()
    assert (len(buffer), buffer.dropped) == (10, 5)
    assert front(buffer) == list(range(5, 15))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 30)),
        st.tuples(st.just("begin"), st.integers(1, 12)),
        st.tuples(st.just("settle"), st.integers(0, 12)),
        st.tuples(st.just("keep"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(max_points=st.integers(1, 20), ops=operations)
def test_every_point_is_accounted_once_and_memory_stays_bounded(
    max_points: int, ops: list[tuple[str, int]]
) -> None:
    buffer = Buffer(max_points)
    appended, wire = 0, 0
    for op, n in ops:
        if op == "add":
            fill(buffer, appended, n)
            appended += n
        elif op == "begin" and not wire:
            _, wire = buffer.begin(n)
        elif op == "settle" and wire:
            buffer.settle(wire - min(n, wire), min(n, wire))
            wire = 0
        elif op == "keep" and wire:
            buffer.keep()
            wire = 0
        assert accounted(buffer) == appended
        assert len(buffer) <= max_points + wire
        if not wire:
            assert len(buffer) <= max_points


def test_with_spill_the_bound_sheds_lines_instead_of_dropping() -> None:
    buffer = Buffer(10)
    buffer.spill = True
    fill(buffer, 0, 10)
    front(buffer, 4)
    buffer.add([point(i) for i in range(10, 18)])  # a tick's points beyond the bound
    assert (len(buffer), buffer.dropped) == (14, 0)
    buffer.keep()
    shed = buffer.shed(5)
    assert sorted(int(line.split("i=")[1].split("i ")[0]) for line in shed) == list(range(13))
    assert (len(buffer), buffer.dropped) == (5, 0)
    assert front(buffer) == list(range(13, 18))


def test_restore_puts_lines_back_and_drops_beyond_the_bound() -> None:
    buffer = Buffer(10)
    buffer.spill = True
    fill(buffer, 0, 8)
    shed = buffer.shed(2)
    buffer.spill = False
    fill(buffer, 8, 4)
    buffer.restore(shed)
    assert (len(buffer), buffer.dropped) == (10, 2)
    assert front(buffer) == list(range(2, 12))
