"""Background cost of the Prometheus and plugin sinks, against line encoding of the same points.

The writer encodes every drained point to line protocol; the sinks see the same points, in
the same batches (a drain every 50 ms: 250 points at 5,000 points/s). Per round, on the same
request points (one ``errors`` point per failed status), this times:

* ``encode``: ``LineEncoder.encode_lines`` per batch — the baseline, the writer's own work;
* ``prometheus``: ``RequestMetrics.feed`` per batch (counters and histogram in the files);
* ``plugin``: ``PluginRunner.feed`` per batch plus delivery to one plugin that does nothing,
  until the plugin has received every point.

The three run alternately for several rounds in one process; the figures that count are the
medians of the per-round ratios to ``encode``.

    python bench/sinks.py [--points 100000] [--batch 250] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from types import SimpleNamespace

from encode import make_points

from luna_monitoring.core.plugins import BaseRequestMonitoringPlugin, PluginRunner
from luna_monitoring.core.point import LineEncoder, Point
from luna_monitoring.core.prometheus import RequestMetrics
from luna_monitoring.core.settings import Settings


class CountingPlugin(BaseRequestMonitoringPlugin):
    """Counts the points it receives; nothing else."""

    received = 0

    async def flush_point_to_monitoring(self, point: Point) -> None:
        self.received += 1


def with_errors(points: list[Point]) -> list[Point]:
    """The request points, each failed one followed by its ``errors`` point."""
    result = []
    for point in points:
        result.append(point)
        if point.tags["status_code"] >= "400":
            tags = {**point.tags, "error_code": "0"}
            fields = {"request_id": point.fields["request_id"]}
            result.append(Point("errors", point.time_ns, tags, fields))
    return result


def time_encode(batches: list[list[Point]]) -> float:
    encoder = LineEncoder()
    began = time.perf_counter()
    for batch in batches:
        encoder.encode_lines(batch)
    return time.perf_counter() - began


def time_prometheus(batches: list[list[Point]]) -> float:
    with tempfile.TemporaryDirectory() as directory:
        metrics = RequestMetrics(directory, {"dc": "bench"})
        began = time.perf_counter()
        for batch in batches:
            metrics.feed(batch)
        elapsed = time.perf_counter() - began
        metrics.close()
    return elapsed


async def time_plugin(batches: list[list[Point]]) -> float:
    total = sum(map(len, batches))
    runner = PluginRunner(SimpleNamespace(), [CountingPlugin], Settings())
    runner.start()
    while not runner.plugins:  # created in its task
        await asyncio.sleep(0)
    plugin = runner.plugins[0]
    began = time.perf_counter()
    for batch in batches:
        runner.feed(batch)
        await asyncio.sleep(0)
    while plugin.received < total:
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - began
    await runner.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    points = with_errors(make_points(args.points))
    batches = [points[i : i + args.batch] for i in range(0, len(points), args.batch)]
    ratios: dict[str, list[float]] = {"prometheus": [], "plugin": []}
    per_point: dict[str, list[float]] = {"encode": [], "prometheus": [], "plugin": []}
    for _ in range(args.rounds):
        gc.collect()
        seconds = {
            "encode": time_encode(batches),
            "prometheus": time_prometheus(batches),
            "plugin": asyncio.run(time_plugin(batches)),
        }
        for name, elapsed in seconds.items():
            per_point[name].append(elapsed / len(points) * 1e9)
        for name in ratios:
            ratios[name].append(seconds[name] / seconds["encode"])
    print(
        f"{len(points)} points ({args.points} requests) in batches of {args.batch}, "
        f"{args.rounds} rounds"
    )
    for name, values in per_point.items():
        ratio = "1.00 (baseline)" if name == "encode" else f"{statistics.median(ratios[name]):.2f}"
        print(f"{name:>10}: {statistics.median(values):7.0f} ns/point, x encode: {ratio}")


if __name__ == "__main__":
    main()
