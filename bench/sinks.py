"""Background cost of the Prometheus and plugin sinks, against line encoding of the same points.

The writer encodes every drained point to line protocol; the sinks see the same points, in
the same batches (a drain every 50 ms: 250 points at 5,000 points/s). Per round, on the same
points, this times:

* ``encode``: ``LineEncoder.encode_lines`` per batch — the baseline, the writer's own work;
* ``prom_before``: the Prometheus sink of commit a921ad7 (``RequestMetrics.feed``: request
  counters and histogram only), loaded from ``git show`` as a temporary module;
* ``prometheus``: today's ``PointMetrics.feed`` per batch (every family in the files);
* ``plugin``: ``PluginRunner.feed`` per batch plus delivery to one plugin that does nothing,
  until the plugin has received every point.

``--mix requests``: request points (one ``errors`` point per failed status), as the
requests-only service makes them. ``--mix sdk``: per request, what ``/sdk`` of the example
makes with one image and four estimations: ``requests``, ``sdkloop_task``, ``image_load``,
four estimator points and ``usages_statistic``, and a ``licensing`` point every 20th.
Tag sets are shared read-only mappings, as the request hooks and the collector make them.
The variants run alternately for several rounds in one process, timed in the thread's CPU
time (other processes on the machine do not count); the figures that count are the medians
of the per-round ratios: each sink against ``encode``, today's Prometheus sink against
``prom_before``, and the worker's background work per point (``encode`` plus the Prometheus
sink) after against before.

    python bench/sinks.py [--points 100000] [--batch 250] [--rounds 5] [--mix requests|sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from encode import make_points, share_tags

from luna_monitoring.core.metric_families import USAGE_FIELDS
from luna_monitoring.core.plugins import BaseRequestMonitoringPlugin, PluginRunner
from luna_monitoring.core.point import LineEncoder, Point
from luna_monitoring.core.point_metrics import PointMetrics
from luna_monitoring.core.settings import Settings

BEFORE = "a921ad7"
ROOT = Path(__file__).resolve().parent.parent


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


def sdk_points(requests: list[Point], seed: int = 2) -> list[Point]:
    """Each request point followed by the points of ``/sdk`` work with one image."""
    rng = random.Random(seed)
    usages = dict.fromkeys(USAGE_FIELDS, 0) | {
        "face_detector_usages": 1,
        "mask_estimator_usages": 1,
    }
    result = []
    for n, request in enumerate(requests):
        service = {"service": request.tags["service"]}
        time_ns = request.time_ns
        result += [
            request,
            Point(
                "sdkloop_task",
                time_ns,
                {**service, "image_count": "1"},
                {"execution_time": rng.uniform(0.002, 0.15)},
            ),
            Point(
                "image_load",
                time_ns,
                {
                    **service,
                    "format": rng.choice(("JPEG", "PNG")),
                    "exif": "True",
                    "autorotated": "False",
                },
                {
                    "execution_time": rng.uniform(0.0001, 0.05),
                    "size": rng.randrange(5000, 300000),
                    "height": 480,
                    "width": 640,
                },
            ),
            *(
                Point(
                    series,
                    time_ns,
                    {**service, "batch_size": "1"},
                    {"execution_time": rng.uniform(1e-6, 0.04)},
                )
                for series in ("face_detection", "landmarks5", "mask", "livenessv1")
            ),
            Point("usages_statistic", time_ns, service, usages),
        ]
        if n % 20 == 0:
            result.append(
                Point(
                    "licensing",
                    time_ns,
                    {**service, "license_status": "warning"},
                    {"liveness_balance": 100 - n % 100, "warnings": "[]"},
                )
            )
    return result  # fmt: skip


def load_before() -> type:
    """``RequestMetrics`` of the Prometheus sink at commit ``BEFORE``, as a temporary module."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:luna_monitoring/core/prometheus.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "prometheus_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("luna_monitoring.core.prometheus_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RequestMetrics


def time_encode(batches: list[list[Point]]) -> float:
    encoder = LineEncoder()
    began = time.thread_time()
    for batch in batches:
        encoder.encode_lines(batch)
    return time.thread_time() - began


def time_prometheus(batches: list[list[Point]], sink: type = PointMetrics) -> float:
    with tempfile.TemporaryDirectory() as directory:
        metrics = sink(directory, {"dc": "bench"})
        began = time.thread_time()
        for batch in batches:
            metrics.feed(batch)
        elapsed = time.thread_time() - began
        metrics.close()
    return elapsed


async def time_plugin(batches: list[list[Point]]) -> float:
    total = sum(map(len, batches))
    runner = PluginRunner(SimpleNamespace(), [CountingPlugin], Settings())
    runner.start()
    while not runner.plugins:  # created in its task
        await asyncio.sleep(0)
    plugin = runner.plugins[0]
    began = time.thread_time()
    for batch in batches:
        runner.feed(batch)
        await asyncio.sleep(0)
    while plugin.received < total:
        await asyncio.sleep(0)
    elapsed = time.thread_time() - began
    await runner.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mix", choices=("requests", "sdk"), default="requests")
    args = parser.parse_args()
    requests = share_tags(with_errors(make_points(args.points)))
    points = requests if args.mix == "requests" else share_tags(sdk_points(requests))
    batches = [points[i : i + args.batch] for i in range(0, len(points), args.batch)]
    before = load_before()
    names = ("encode", "prom_before", "prometheus", "plugin")
    ratios: dict[str, list[float]] = {name: [] for name in names}
    per_point: dict[str, list[float]] = {name: [] for name in names}
    after_before: list[float] = []
    background: list[float] = []  # encoding plus the Prometheus sink, after / before
    for _ in range(args.rounds):
        gc.collect()
        seconds = {
            "encode": time_encode(batches),
            "prom_before": time_prometheus(batches, before),
            "prometheus": time_prometheus(batches),
            "plugin": asyncio.run(time_plugin(batches)),
        }
        for name, elapsed in seconds.items():
            per_point[name].append(elapsed / len(points) * 1e9)
            ratios[name].append(seconds[name] / seconds["encode"])
        after_before.append(seconds["prometheus"] / seconds["prom_before"])
        background.append(
            (seconds["encode"] + seconds["prometheus"])
            / (seconds["encode"] + seconds["prom_before"])
        )
    print(
        f"{len(points)} points ({args.mix} mix, {args.points} requests) in batches of "
        f"{args.batch}, {args.rounds} rounds"
    )
    for name, values in per_point.items():
        ratio = f"{statistics.median(ratios[name]):.2f}"
        print(f"{name:>12}: {statistics.median(values):7.0f} ns/point, x encode: {ratio}")
    print(f"prometheus / prom_before: {statistics.median(after_before):.2f}")
    print(f"(encode + prometheus) / (encode + prom_before): {statistics.median(background):.2f}")


if __name__ == "__main__":
    main()
