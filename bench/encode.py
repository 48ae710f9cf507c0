"""Line-protocol encoding speed: ``LineEncoder`` against influxdb-client's ``Point``.

Both encode the same request-like points (measurement ``requests``, tags ``service``,
``route``, ``status_code``, fields ``request_id`` and ``execution_time``) to identical
lines. The two run alternately for several rounds in one process; the figure that counts
is the median of the per-round ratios.

    python bench/encode.py [--points 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import uuid
from collections.abc import Callable

from influxdb_client import Point as ClientPoint

from luna_monitoring.point import LineEncoder, Point

ROUTES = [f"{method}:{path}" for method in ("GET", "POST") for path in (
    "/sdk", "/iso", "/handlers", "/handlers/<handler_id>", "/version", "/healthcheck",
)]
STATUS_CODES = ["200"] * 16 + ["201", "400", "404", "500"]


def make_points(count: int, seed: int = 1) -> list[Point]:
    """``count`` request points with realistic values, spaced 1 ms apart."""
    rng = random.Random(seed)
    start_ns = 1_700_000_000_000_000_000
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
                "execution_time": rng.uniform(0.0005, 2.0),
                "request_id": f"{1_700_000_000 + i // 1000},{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            },
        )
        for i in range(count)
    ]


def encode_ours(points: list[Point]) -> list[str]:
    """The package's encoder, fresh (its tag-set cache starts empty)."""
    return LineEncoder().encode_lines(points)


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


def timed(encode: Callable[[list[Point]], list[str]], points: list[Point]) -> float:
    """Seconds one encoding of ``points`` takes."""
    gc.collect()
    began = time.perf_counter()
    encode(points)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    points = make_points(args.points)
    if encode_ours(points) != encode_client(points):
        raise SystemExit("the encoders disagree: the comparison would be meaningless")

    ours, client = [], []
    for _ in range(args.rounds):
        ours.append(timed(encode_ours, points))
        client.append(timed(encode_client, points))
    ratios = [c / o for o, c in zip(ours, client, strict=True)]

    def rate(seconds: list[float]) -> str:
        median = statistics.median(seconds)
        return f"{args.points / median:>12,.0f} points/s  ({median / args.points * 1e9:,.0f} ns/point)"

    print(f"{args.points:,} points, {args.rounds} alternating rounds, medians:")
    print(f"  LineEncoder.encode_lines   {rate(ours)}")
    print(f"  influxdb_client.Point      {rate(client)}")
    print(f"  ratio {statistics.median(ratios):.2f}x  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
