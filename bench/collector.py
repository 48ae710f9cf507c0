"""Cost of recording SDK estimations, against a baseline in the same run.

Recording calls run in simulated requests of 100: a fresh collector, the calls, and its
points appended to a buffer emptied every 5000 points, as the writer's is; their baseline is
the same blocks on an empty context manager. The per-request cost (collector,
``sdkloop_task`` and ``usages_statistic``) is measured in requests of one ``add_usage``, and
the decorator's with a sync handler called with a real ``Request``, against the undecorated
handler. Times are the thread's CPU time, so other processes on the shared machine do not
inflate them. Every round runs each case once, in rotating order; a case's figure is its
median over the rounds, its added cost that median minus the median of its baseline. Run:

    taskset -c 1 .venv/bin/python bench/collector.py [--no-gc | --gc-freeze]

``--no-gc`` disables the garbage collector to show its share: every point kept until the
writer's flush is two objects (the point and its fields) that count towards collections, and
every full collection traverses the whole heap. ``--gc-freeze`` calls ``gc.freeze()`` once
before measuring, as an application could after startup, so that full collections skip the
objects made until then.
"""

from __future__ import annotations

import argparse
import gc
import statistics
from collections import deque
from collections.abc import Callable
from time import thread_time_ns
from typing import NamedTuple

from sanic import Request, Sanic
from sanic.compat import Header

import luna_monitoring.sanic.request_hooks  # noqa: F401  (the decorator finds a Request's monitoring)
from luna_monitoring.core.clock import UniqueClock
from luna_monitoring.core.collector import (
    EstimationCollector,
    current_collector,
    monitored_estimation,
)
from luna_monitoring.core.settings import Settings

CALLS = 100_000
ROUNDS = 15

DETECTION = {
    "detection_count": 2,
    "image_height": 1080,
    "image_width": 1920,
    "face_detection_height": 200,
    "face_detection_width": 150,
}


class _Empty:
    """The baseline: a context manager that does nothing."""

    __slots__ = ()

    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, **fields: object) -> None:
        return None


def _recorded(
    record: Callable[[EstimationCollector], None], per_request: int = 100
) -> Callable[[], int]:
    """CALLS calls of ``record``, ``per_request`` per fresh collector."""

    def run() -> int:
        clock, buffer = UniqueClock(), deque()
        start = thread_time_ns()
        for _ in range(CALLS // per_request):
            collector = EstimationCollector(clock.now_ns, "luna-remote-sdk")
            for _ in range(per_request):
                record(collector)
            buffer.extend(collector.points(0.01))
            if len(buffer) > 5_000:
                buffer.clear()
        return thread_time_ns() - start

    run.__name__ = f"{record.__name__}_{per_request}"
    return run


def _baseline(block: Callable[[], None]) -> Callable[[], int]:
    """The same loops around ``block`` without a collector."""

    def run() -> int:
        start = thread_time_ns()
        for _ in range(CALLS):
            block()
        return thread_time_ns() - start

    run.__name__ = block.__name__
    return run


@_baseline
def empty_block() -> None:
    with _Empty():
        pass


@_baseline
def empty_block_with_set() -> None:
    with _Empty() as block:
        block.set(**DETECTION)


@_baseline
def nothing() -> None:
    pass


def estimation(collector: EstimationCollector) -> None:
    with collector.estimation("mask", batch_size=4):
        pass


def estimation_with_set(collector: EstimationCollector) -> None:
    with collector.estimation("face_detection", batch_size=1) as block:
        block.set(**DETECTION)


def estimation_with_tag(collector: EstimationCollector) -> None:
    with collector.estimation("face_descriptor", batch_size=4, descriptor_version=59):
        pass


def record_estimation(collector: EstimationCollector) -> None:
    collector.record_estimation("mask", batch_size=4, execution_time=0.012)


def add_usage(collector: EstimationCollector) -> None:
    collector.add_usage("face_detector")


class _Monitoring(NamedTuple):
    """What the decorator uses of ``app.ctx.monitoring``."""

    clock: UniqueClock
    settings: Settings
    emit_all: Callable[[list], None]


_APP = Sanic("bench_collector", configure_logging=False)


def _handler_calls(handler: Callable[[Request], None]) -> Callable[[], int]:
    """CALLS calls of a sync handler with a request of an app whose monitoring buffers
    into a deque emptied every 5000 points."""

    def run() -> int:
        buffer: deque = deque()
        _APP.ctx.monitoring = _Monitoring(UniqueClock(), Settings(), buffer.extend)
        request = Request(b"/sdk", Header(), "1.1", "POST", None, _APP)
        start = thread_time_ns()
        for _ in range(CALLS):
            handler(request)
            if len(buffer) > 5_000:
                buffer.clear()
        return thread_time_ns() - start

    run.__name__ = handler.__name__
    return run


def plain_handler(request: Request) -> None:
    current_collector()


@monitored_estimation
def decorated_handler(request: Request) -> None:
    current_collector()


@monitored_estimation
def decorated_handler_with_usage(request: Request) -> None:
    current_collector().add_usage("face_detector")


# case -> (run, baseline)
CASES: dict[str, tuple[Callable[[], int], Callable[[], int]]] = {
    "estimation()": (_recorded(estimation), empty_block),
    "estimation() + .set(5 fields)": (_recorded(estimation_with_set), empty_block_with_set),
    "estimation(descriptor_version=)": (_recorded(estimation_with_tag), empty_block),
    "record_estimation()": (_recorded(record_estimation), nothing),
    "add_usage()": (_recorded(add_usage), nothing),
    "per request: collector, sdkloop_task, usages_statistic": (
        _recorded(add_usage, per_request=1),
        nothing,
    ),
    "decorated handler recording nothing": (
        _handler_calls(decorated_handler),
        _handler_calls(plain_handler),
    ),
    "decorated handler with one add_usage()": (
        _handler_calls(decorated_handler_with_usage),
        _handler_calls(plain_handler),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    gc_mode = parser.add_mutually_exclusive_group()
    gc_mode.add_argument("--no-gc", action="store_true", help="disable the garbage collector")
    gc_mode.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before measuring")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    elif args.gc_freeze:
        gc.collect()
        gc.freeze()
    order = sorted({f for pair in CASES.values() for f in pair}, key=lambda f: f.__name__)
    samples: dict[Callable[[], int], list[float]] = {f: [] for f in order}
    for round_ in range(ROUNDS):
        shift = round_ % len(order)
        for function in order[shift:] + order[:shift]:
            gc.collect()  # every run starts from the same collector state
            samples[function].append(function() / CALLS)
    median = {f: statistics.median(values) for f, values in samples.items()}
    print("| call | ns | baseline ns | added ns |")
    print("|---|---:|---:|---:|")
    for name, (case, baseline) in CASES.items():
        print(
            f"| {name} | {median[case]:.0f} | {median[baseline]:.0f} "
            f"| {median[case] - median[baseline]:.0f} |"
        )


if __name__ == "__main__":
    main()
