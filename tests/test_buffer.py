"""The bounded buffer: request-path append, encoding, oldest-first drops, exact accounting."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from implementations import KINDS, swapped_methods

from luna_monitoring.core import buffer as buffer_module
from luna_monitoring.core.buffer import Buffer, LineQueue
from luna_monitoring.core.point import Point


@pytest.fixture(scope="module", params=KINDS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: with the compiled ``append``/``extend`` and in Python."""
    yield from swapped_methods(request.param, Buffer, buffer_module.COMPILED_METHODS)


def point(i: int) -> Point:
    return Point("m", 1_700_000_000_000_000_000 + i, {"k": "v"}, {"i": i})


def fill(buffer: Buffer, start: int, count: int) -> None:
    for i in range(start, start + count):
        buffer.append(point(i))
    buffer.add(buffer.take(count))


def number(line: str) -> int:
    return int(line.split("i=")[1].split("i ")[0])


def front(buffer: Buffer, n: int = 10_000) -> list[int]:
    """The ``i`` fields of the oldest lines (puts them on the wire)."""
    body, _ = buffer.begin(n)
    return [number(line) for line in body.decode().splitlines()]


def held(buffer: Buffer) -> list[int]:
    """The ``i`` fields of every line held, oldest first: the wire, ``_lines``, the blocks
    (but their skipped lines), the tail (the buffer is left as it is)."""
    lines = [*buffer._wire, *buffer._lines]
    for at, (data, count) in enumerate(buffer._packed):
        block = zlib.decompress(data).decode().split("\n")
        assert len(block) == count
        lines += block[buffer._skip :] if at == 0 else block
    return [number(line) for line in [*lines, *buffer._tail]]


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


def test_extend_buffers_and_drops_exactly_as_appends_would() -> None:
    """One request's points at once: below the bound in one go, at it the oldest dropped."""
    extended, appended = Buffer(10), Buffer(10)
    fill(extended, 0, 4)
    fill(appended, 0, 4)
    for start, count in ((4, 3), (7, 5), (12, 1)):
        extended.extend([point(i) for i in range(start, start + count)])
        for i in range(start, start + count):
            appended.append(point(i))
        assert (len(extended), extended.dropped) == (len(appended), appended.dropped)
    assert (len(extended), extended.dropped) == (10, 3)
    extended.add(extended.take(10))
    assert front(extended) == list(range(3, 13))


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


# -- packing: the oldest lines of a long tail held as zlib blocks ---------------------------


def packing(max_points: int = 1000, pack_after: int = 10, pack_lines: int = 5) -> Buffer:
    return Buffer(max_points, pack_after=pack_after, pack_lines=pack_lines)


def test_add_packs_the_tail_beyond_pack_after_in_blocks() -> None:
    buffer = packing()
    fill(buffer, 0, 14)
    assert buffer.packs == 0
    fill(buffer, 14, 13)  # 27 in the tail: blocks while it holds 15 or more
    assert (buffer.packs, len(buffer._packed), len(buffer._tail)) == (3, 3, 12)
    assert (len(buffer), buffer.lines) == (27, 27)
    assert held(buffer) == list(range(27))


def test_order_holds_through_unpack_keep_shed_and_restore() -> None:
    buffer = packing()
    fill(buffer, 0, 40)
    assert front(buffer, 7) == list(range(7))  # a block and a half unpacked
    buffer.keep()
    assert held(buffer) == list(range(40))
    assert front(buffer, 3) == [0, 1, 2]
    buffer.settle(3)
    buffer.spill = True
    shed = buffer.shed(30)
    assert [number(line) for line in shed] == list(range(3, 10))
    fill(buffer, 40, 5)
    buffer.restore(shed)
    assert held(buffer) == list(range(3, 45))
    assert front(buffer) == list(range(3, 45))
    assert (buffer.lines, buffer.written, buffer.dropped) == (42, 3, 0)


def test_peek_shows_what_begin_takes_next_up_to_a_packed_block() -> None:
    unpacked = packing(pack_after=1000)
    fill(unpacked, 0, 8)
    assert [number(line) for line in unpacked.peek(5)] == [0, 1, 2, 3, 4]
    assert [number(line) for line in unpacked.peek(50)] == list(range(8))
    assert held(unpacked) == list(range(8))  # nothing taken
    buffer = packing()
    fill(buffer, 0, 27)
    assert buffer.peek(5) == []  # the oldest lines are packed
    assert front(buffer, 7) == list(range(7))
    buffer.keep()
    assert [number(line) for line in buffer.peek(20)] == list(range(10))  # unpacked so far
    assert held(buffer) == list(range(27))


def test_appends_at_the_bound_skip_block_lines_without_unpacking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = packing(max_points=50, pack_after=5, pack_lines=10)
    fill(buffer, 0, 50)
    assert (len(buffer._lines), len(buffer._packed), len(buffer._tail)) == (0, 4, 10)

    def unpacked(*args: object) -> bytes:
        raise AssertionError("append unpacked a block")

    monkeypatch.setattr(zlib, "decompress", unpacked)
    for i in range(50, 75):
        buffer.append(point(i))
        assert len(buffer) == 50
    assert (buffer.dropped, len(buffer._packed), buffer._skip) == (25, 2, 5)
    monkeypatch.undo()
    assert held(buffer) == list(range(25, 50))
    buffer.add(buffer.take(100))
    assert front(buffer) == list(range(25, 75))
    assert accounted(buffer) == 75


def test_the_bound_at_a_tick_drops_whole_blocks_without_unpacking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = packing(max_points=50, pack_after=5, pack_lines=10)
    fill(buffer, 0, 50)
    monkeypatch.setattr(zlib, "decompress", None)
    buffer.add([point(i) for i in range(50, 73)])  # 23 over: two blocks and 3 lines
    # two blocks and 3 lines of the third dropped; the tail of 33 packed into two more
    assert (buffer.dropped, len(buffer._packed), buffer._skip, len(buffer)) == (23, 4, 3, 50)
    monkeypatch.undo()
    assert held(buffer) == list(range(23, 73))


def test_a_sender_that_keeps_up_never_packs() -> None:
    """A tick of 250 points every 50 ms (5,000/s) and a batch of 5,000 sent as soon as one
    waits, one write in flight across a tick: the writer's default threshold is never met."""
    buffer = Buffer(100_000, pack_after=max(100_000 // 4, 2 * 5000))
    appended = 0
    for _ in range(2000):
        fill(buffer, appended, 250)
        appended += 250
        if buffer._wire:
            buffer.settle(len(buffer._wire))
        elif buffer.lines >= 5000:
            buffer.begin(5000)
    assert (buffer.packs, buffer.dropped) == (0, 0)
    assert accounted(buffer) == appended


packed_operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 30)),
        st.tuples(st.just("tick"), st.integers(0, 30)),
        st.tuples(st.just("begin"), st.integers(1, 25)),
        st.tuples(st.just("settle"), st.integers(0, 25)),
        st.tuples(st.just("keep"), st.just(0)),
        st.tuples(st.just("shed"), st.integers(0, 40)),
        st.tuples(st.just("spill"), st.integers(0, 1)),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(
    max_points=st.integers(1, 60),
    pack_after=st.integers(0, 12),
    pack_lines=st.integers(1, 7),
    ops=packed_operations,
)
def test_packing_changes_nothing_but_memory(
    max_points: int, pack_after: int, pack_lines: int, ops: list[tuple[str, int]]
) -> None:
    """The same operations on a packing buffer and on one that never packs (the model): the
    same lines in the same order, the same bodies, shed lines and counters; every point
    counted once (the lines shed count as spooled, or as restored on ``spill`` off)."""
    buffers = packing(max_points, pack_after, pack_lines), Buffer(max_points, pack_after=10**9)
    appended = spooled = wire = 0
    for op, n in ops:
        if op == "append":
            for buffer in buffers:
                for i in range(appended, appended + n):
                    buffer.append(point(i))
            appended += n
        elif op == "tick":
            for buffer in buffers:
                buffer.add(buffer.take(n))
        elif op == "begin" and not wire:
            bodies = {buffer.begin(n) for buffer in buffers}
            assert len(bodies) == 1
            wire = bodies.pop()[1]
        elif op == "settle" and wire:
            for buffer in buffers:
                buffer.settle(wire - min(n, wire), min(n, wire))
            wire = 0
        elif op == "keep" and wire:
            for buffer in buffers:
                buffer.keep()
            wire = 0
        elif op == "shed" and buffers[0].spill:
            shed = [buffer.shed(n) for buffer in buffers]
            assert shed[0] == shed[1]
            spooled += len(shed[0]) // 2
            for buffer in buffers:
                buffer.spill = False
                buffer.restore(shed[0][len(shed[0]) // 2 :])  # the spool took half
                buffer.spill = True
        elif op == "spill":
            for buffer in buffers:
                buffer.spill = bool(n)
        ours, model = buffers
        assert held(ours) == held(model)
        assert held(ours) == sorted(set(held(ours)))
        for name in ("raw", "lines", "dropped", "written", "rejected", "_owed", "_room"):
            assert getattr(ours, name) == getattr(model, name), name
        assert [number(line) for line in ours._shed] == [number(line) for line in model._shed]
        assert accounted(ours) + spooled + len(ours._shed) == appended
        assert len(ours) <= max_points + wire
        if not wire:
            assert len(ours) <= max_points
        assert len(ours._tail) < pack_after + pack_lines


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["extend", "take", "drop", "head"]), st.integers(0, 40)),
        max_size=60,
    )
)
def test_line_queue_is_a_fifo(steps: list[tuple[str, int]]) -> None:
    """Whatever the order of adds, takes, drops and looks, the queue holds and gives what a
    deque would, oldest first, however often it cuts off its read part."""
    queue, model, made = LineQueue(), [], 0
    for step, count in steps:
        if step == "extend":
            lines = [f"l{made + i}" for i in range(count)]
            made += count
            queue.extend(lines)
            model.extend(lines)
        elif step == "take":
            assert queue.take(count) == model[:count]
            del model[:count]
        elif step == "drop":
            queue.drop(count)
            del model[:count]
        else:
            assert queue.head(count) == model[:count]
        assert len(queue) == len(model) and list(queue) == model
