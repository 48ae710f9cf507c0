"""Line-protocol encoding speed: ``LineEncoder`` against influxdb-client's ``Point``.

Both encode the same request-like points (measurement ``requests``, tags ``service``,
``route``, ``status_code``, fields ``execution_time`` and ``request_id``) to identical lines:
once all points in one call, and once in calls of ``--batch`` points to one encoder, each
call's lines dropped before the next (as the writer sends each batch), and in calls of
``--batch`` again with each distinct tag set one shared ``MappingProxyType``, as the request
hooks make them (the encoder finds their prefix by identity). The encoders run
alternately for several rounds in one process. Times are the process's CPU time, so other
processes on the machine count little; the figures that count are the medians of the
per-round ratios.

With ``--against REVISION`` the baseline is the package's own ``LineEncoder`` as it was at
that git revision (its ``core/point.py`` loaded into a module of its own) instead of
influxdb-client's ``Point``; with ``--python`` it is today's ``LineEncoder`` on its
pure-Python path (what runs where the compiled hot paths are not built). With
``--estimation`` the points are those of ``bench/overhead.py``'s estimation-heavy request
(14 a request: ``sdkloop_task``, two ``image_load``, ten estimations, ``usages_statistic``),
recorded by the package's own collector (as it buffers them: tag sets shared, compiled
``TimedPoint``s where it makes them), and the times are given per request too.

    python bench/encode.py [--points 100000] [--batch 5000] [--rounds 5]
                           [--against a921ad7 | --python] [--estimation]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType, ModuleType

from estimation import POINTS_PER_REQUEST, record_request
from influxdb_client import Point as ClientPoint

from luna_monitoring.core.clock import UniqueClock
from luna_monitoring.core.collector import EstimationCollector
from luna_monitoring.core.point import LineEncoder, Point

ROUTES = [
    f"{method}:{path}"
    for method in ("GET", "POST")
    for path in ("/sdk", "/iso", "/handlers", "/handlers/<handler_id>", "/version", "/health")
]
STATUS_CODES = ["200"] * 16 + ["201", "400", "404", "500"]

Encode = Callable[[list[Point]], list[str]]


def make_points(count: int, seed: int = 1) -> list[Point]:
    """``count`` request points with realistic values, 1 ms apart."""
    rng = random.Random(seed)
    start_ns = 1_700_000_000_000_000_000

    def request_id(i: int) -> str:
        return f"{1_700_000_000 + i // 1000},{uuid.UUID(int=rng.getrandbits(128), version=4)}"

    return [
        Point(
            "requests",
            start_ns + i * 1_000_000,
            {
                "service": "luna-remote-sdk",
                "route": rng.choice(ROUTES),
                "status_code": rng.choice(STATUS_CODES),
            },
            {  # in sorted order, as influxdb-client writes fields
                "execution_time": rng.randrange(500_000, 2_000_000_000) / 1e9,  # whole ns
                "request_id": request_id(i),
            },
        )
        for i in range(count)
    ]


def make_estimation_points(count: int) -> list[Point]:
    """The points of ``count // 14`` estimation-heavy requests, as the collector records them
    (the handler of ``bench/overhead.py``'s estimation route)."""
    clock = UniqueClock()
    points: list[Point] = []
    for _ in range(count // POINTS_PER_REQUEST):
        collector = EstimationCollector(clock.now_ns, "luna-remote-sdk")
        record_request(collector)
        points += collector.points(0.001)
    return points


def share_tags(points: list[Point]) -> list[Point]:
    """The same points, equal tag sets replaced by one read-only mapping each."""
    shared: dict[tuple, MappingProxyType] = {}
    return [
        Point(s, t, shared.setdefault(tuple(tags.items()), MappingProxyType(tags)), f)
        for s, t, tags, f in points
    ]


def new_encoder() -> Encode:
    """The package's encoder, fresh (its caches start empty)."""
    return LineEncoder().encode_lines


def encoder_at(revision: str) -> Callable[[], Encode]:
    """A maker of fresh encoders of ``core/point.py`` as it was at git ``revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:luna_monitoring/core/point.py"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = ModuleType(f"luna_monitoring.core._point_{revision}")
    module.__package__ = "luna_monitoring.core"  # its relative imports: today's caches, schema
    sys.modules[module.__name__] = module
    exec(compile(source, f"{revision}:point.py", "exec"), module.__dict__)
    return lambda: module.LineEncoder().encode_lines


def encode_client(points: list[Point]) -> list[str]:
    """influxdb-client's ``Point`` builder, one object per point."""
    lines = []
    for series, time_ns, tags, fields in points:
        point = ClientPoint(series)
        for key, value in tags.items():
            point.tag(key, value)
        for key, value in fields.items():
            point.field(key, value)
        lines.append(point.time(time_ns).to_line_protocol())
    return lines


def in_batches(encode: Encode, size: int) -> Encode:
    """``encode`` called on ``size`` points at a time, each batch's lines dropped after it."""

    def encode_batches(points: list[Point]) -> list[str]:
        for start in range(0, len(points), size):
            encode(points[start : start + size])
        return []

    return encode_batches


def cpu_seconds(encode: Encode, points: list[Point]) -> float:
    """CPU seconds one encoding of ``points`` takes."""
    gc.collect()
    began = time.process_time()
    encode(points)
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", metavar="REVISION", help="baseline: LineEncoder at REVISION")
    parser.add_argument("--python", action="store_true", help="baseline: the pure-Python path")
    parser.add_argument(
        "--estimation", action="store_true", help="the points of estimation-heavy requests"
    )
    args = parser.parse_args()
    if args.estimation and not (args.python or args.against):
        parser.error("--estimation needs --python or --against: influxdb-client's Point writes "
                     "these points otherwise (fields sorted, exponents as 1e-07)")  # fmt: skip

    points = make_estimation_points(args.points) if args.estimation else make_points(args.points)
    args.points = len(points)
    if args.against:
        baseline, baseline_name = encoder_at(args.against), f"LineEncoder at {args.against}"
    elif args.python:
        baseline, baseline_name = (lambda: LineEncoder()._encode_lines_python), "pure Python"
    else:
        baseline, baseline_name = (lambda: encode_client), "influxdb_client.Point"
    if new_encoder()(points) != baseline()(points):
        raise SystemExit("the encoders disagree: the comparison would be meaningless")

    batches = (
        lambda: in_batches(new_encoder(), args.batch),
        lambda: in_batches(baseline(), args.batch),
    )
    modes: dict[str, tuple[list[Point], tuple[Callable[[], Encode], ...]]] = {
        f"one call of {args.points:,}": (points, (new_encoder, baseline)),
        f"calls of {args.batch:,}": (points, batches),
    }
    if not args.estimation:  # the collector's points share their tag sets already
        modes[f"calls of {args.batch:,}, tag sets shared"] = (share_tags(points), batches)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for mode, (mode_points, encoders) in modes.items():
            for which, make_encode in enumerate(encoders):
                times.setdefault((mode, which), []).append(cpu_seconds(make_encode(), mode_points))

    kind = "estimation-heavy request" if args.estimation else "request"
    print(f"{args.points:,} {kind} points, {args.rounds} alternating rounds, CPU time, medians")
    for mode in modes:
        ours, other = times[mode, 0], times[mode, 1]
        ratio = statistics.median(c / o for o, c in zip(ours, other, strict=True))
        print(f"  {mode}:")
        for name, seconds in (("LineEncoder.encode_lines", ours), (baseline_name, other)):
            per_point = statistics.median(seconds) / args.points
            per_request = (
                f"  {per_point * POINTS_PER_REQUEST * 1e6:.2f} µs/request"
                if args.estimation
                else ""
            )
            print(
                f"    {name:26} {1 / per_point:>10,.0f} points/s  {per_point * 1e9:>6,.0f} ns/point"
                + per_request
            )
        print(f"    ratio {ratio:.3f}x (baseline time / this time)")


if __name__ == "__main__":
    main()
