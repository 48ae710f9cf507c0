"""Time and peak memory of ``python -m luna_monitoring report`` over 10k, 100k and 1M points.

A throw-away InfluxDB 1.x gets one database per size, filled with synthetic points of every
kind the report reads, in the mix of a busy service (per request: ``requests``,
``sdkloop_task``, ``image_load``, two estimator points and ``usages_statistic``; an
``errors`` point for 1 in 20, a ``licensing`` point for 1 in 100), spread over the last
50 minutes, encoded by the package's ``LineEncoder`` and written in batches of 5,000.

For each size, alternating over ``--rounds``: the report (``--since 1h``) as a subprocess,
and the baseline, a subprocess that pulls every ``execution_time`` of the same range as raw
points over the same ``/query`` (what a report computing percentiles in Python would have
to read). Wall time and peak RSS (``wait4``) of each; figures are medians, ratios the medians
of per-round ratios. Both talk to the same server; its own work is part of the time.

    python bench/report.py [--sizes 10000,100000,1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from example_app.influxd import InfluxD, http  # noqa: E402
from luna_monitoring.core.point import LineEncoder, Point, join_lines  # noqa: E402
from luna_monitoring.core.schema import USAGE_ESTIMATORS  # noqa: E402

SPAN_S = 3000
BATCH = 5000
SERVICE = "bench"
ROUTES = ("POST:/sdk",) * 8 + ("POST:/iso", "GET:/version")
ESTIMATORS = ("face_detection", "landmarks5", "livenessv1", "body_detection", "basic_attributes")
ERRORS = (("400", "12022"), ("400", "12030"), ("413", "12031"), ("500", "1"))
_PULL = """
import json, sys, urllib.parse, urllib.request
port, db, since, names = sys.argv[1:]
names = ",".join('"%s"' % n for n in names.split(","))
q = f"SELECT execution_time FROM {names} WHERE time > now() - {since}"
body = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}).encode()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
payload = json.loads(opener.open(f"http://127.0.0.1:{port}/query", body, timeout=600).read())
values = [row[1] for s in payload["results"][0]["series"] for row in s["values"]]
print(len(values))
"""


def request_points(rng: random.Random, i: int, time_ns: int) -> list[Point]:
    """The points of one synthetic request."""
    route = rng.choice(ROUTES)
    latency = rng.lognormvariate(-4, 0.8)
    failed = i % 20 == 0
    status, code = rng.choice(ERRORS) if failed else ("200", "0")
    tags = {"service": SERVICE, "route": route, "status_code": status}
    rid = f"1700000000,{i:032x}"
    points = [Point("requests", time_ns, tags, {"request_id": rid, "execution_time": latency})]
    if failed:
        points.append(Point("errors", time_ns, {**tags, "error_code": code}, {"request_id": rid}))
    images = rng.choice((1, 1, 1, 2, 4))
    sdk = {"service": SERVICE}
    points += [
        Point(
            "sdkloop_task",
            time_ns + 1000,
            {**sdk, "image_count": str(images)},
            {"execution_time": latency * 0.9},
        ),
        Point(
            "image_load",
            time_ns + 2000,
            {**sdk, "format": rng.choice(("JPEG", "PNG")), "exif": "False", "autorotated": "False"},
            {
                "execution_time": latency * 0.1,
                "size": rng.randrange(5_000, 2_000_000),
                "height": 480,
                "width": 640,
            },
        ),
    ]
    for k, series in enumerate(rng.sample(ESTIMATORS, 2)):
        points.append(
            Point(
                series,
                time_ns + 3000 + k,
                {**sdk, "batch_size": str(images)},
                {"execution_time": latency * rng.random() * 0.3},
            )
        )
    usages = {f"{name}_usages": 0 for name in USAGE_ESTIMATORS}
    usages["face_detector_usages"] = images
    points.append(Point("usages_statistic", time_ns + 5000, sdk, usages))
    if i % 100 == 0:
        status = "warning" if i % 300 else "error"
        points.append(
            Point(
                "licensing",
                time_ns + 6000,
                {**sdk, "license_status": status},
                {"liveness_balance": max(0, 1000 - i // 100), "warnings": "[]", "errors": "[]"},
            )
        )
    return points


def fill(influx: InfluxD, database: str, size: int) -> float:
    """Write about ``size`` points over the last ``SPAN_S`` seconds; return seconds taken."""
    influx.create_database(database)
    rng = random.Random(size)
    per_request = 6.06  # the mean number of points per request of request_points
    requests = round(size / per_request)
    step_ns = SPAN_S * 10**9 // requests
    start_ns = time.time_ns() - (SPAN_S + 60) * 10**9
    encoder, lines, written = LineEncoder(), [], 0
    began = time.perf_counter()
    for i in range(requests):
        lines.extend(encoder.encode_lines(request_points(rng, i, start_ns + i * step_ns)))
        if len(lines) >= BATCH or i == requests - 1:
            http(
                "POST",
                f"{influx.url}/write?db={database}&precision=ns",
                join_lines(lines),
                timeout=120,
            )
            written += len(lines)
            lines = []
    took = time.perf_counter() - began
    print(f"  {database}: {written:,} points written in {took:.1f} s", flush=True)
    return written


class Run(NamedTuple):
    """One subprocess: wall seconds, CPU seconds (user + system) and peak RSS in MiB."""

    wall_s: float
    cpu_s: float
    rss_mib: float


def measure(command: list[str]) -> Run:
    """Run ``command``; it must exit 0."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    took = time.perf_counter() - began
    output = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]} failed: {output}")
    return Run(took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    series = ",".join(("requests", "errors", "sdkloop_task", "image_load", *ESTIMATORS))
    series = series.replace("errors,", "")  # errors have no execution_time
    rows = []
    with InfluxD(start_timeout_s=60) as influx, tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            database = f"bench_{size}"
            points = fill(influx, database, size)
            config = Path(tmp) / f"{database}.json"
            config.write_text(
                json.dumps(
                    {"version": 1, "port": influx.port, "database": database, "service": SERVICE}
                )
            )
            report = [
                sys.executable,
                "-m",
                "luna_monitoring",
                "report",
                str(config),
                "--since",
                "1h",
                "--out",
                str(Path(tmp) / f"{database}.html"),
            ]
            pull = [sys.executable, "-c", _PULL, str(influx.port), database, "1h", series]
            runs = []
            for _ in range(args.rounds):
                runs.append((measure(report), measure(pull)))
            size_kib = (Path(tmp) / f"{database}.html").stat().st_size / 1024
            rows.append((points, runs, size_kib))
            for name, k in (("report", 0), ("raw pull", 1)):
                print(
                    f"  {database} {name}: "
                    + ", ".join(
                        f"{r[k].wall_s:.2f} s wall {r[k].cpu_s:.2f} s CPU {r[k].rss_mib:.0f} MiB"
                        for r in runs
                    ),
                    flush=True,
                )
    print(
        "\n| points in range | report: wall, CPU, peak RSS | raw pull: wall, CPU, peak RSS "
        "| report / raw pull: wall, CPU, RSS | page |"
    )
    print("|---|---|---|---|---|")
    med = statistics.median
    for points, runs, size_kib in rows:
        cells = []
        for k in (0, 1):
            wall, cpu, rss = (med(r[k][i] for r in runs) for i in range(3))
            cells.append(f"{wall:.2f} s, {cpu:.2f} s, {rss:.0f} MiB")
        ratios = ", ".join(f"{med(r[0][i] / r[1][i] for r in runs):.2f}" for i in range(3))
        print(f"| {points:,} | {cells[0]} | {cells[1]} | {ratios} | {size_kib:.0f} KiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
