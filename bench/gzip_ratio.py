"""How much gzip shrinks a write body: realistic request lines against the benchmark's own.

Two bodies of ``--points`` request lines each, encoded by ``LineEncoder`` as the writer
sends them: *realistic* ones (``request_id`` = unix seconds and a random uuid4 per request,
``execution_time`` log-normally spread around 30 ms with full float precision, a few routes
and statuses, timestamps of one worker's clock at ~5,000 requests/s) and the *benchmark*
ones of ``bench/writer.py`` (sequential zero-padded ids, 97 distinct timings). Each is
compressed at levels 1 (the writer's) and 9; the figure is raw size / compressed size, and
the CPU time per line at level 1.

    python bench/gzip_ratio.py [--points 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
import zlib

from luna_monitoring.core.point import LineEncoder, Point, join_lines

ROUTES = ("POST:/sdk", "POST:/iso", "GET:/version", "POST:/sdk", "POST:/sdk")
STATUSES = ("200",) * 18 + ("400", "413")


def realistic(n: int, rng: random.Random) -> list[Point]:
    now = time.time_ns() // 1024 * 1024
    points = []
    for i in range(n):
        now += 200_000 + rng.randrange(0, 1_000_000) // 1024 * 1024
        request_id = f"{now // 10**9},{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        tags = {
            "service": "luna-remote-sdk",
            "route": ROUTES[i % 5],
            "status_code": rng.choice(STATUSES),
        }
        fields = {"request_id": request_id, "execution_time": rng.lognormvariate(-3.5, 0.6)}
        points.append(Point("requests", now, tags, fields))
    return points


def benchmark(n: int) -> list[Point]:
    base = 1_700_000_000_000_000_000
    tags = {"service": "bench", "route": "GET:/", "status_code": "200"}
    return [
        Point(
            "requests",
            base + i,
            tags,
            {"request_id": f"1700000000,{i:036d}", "execution_time": 0.0123 + i % 97 / 1e4},
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    for name, points in (
        ("realistic", realistic(args.points, rng)),
        ("benchmark", benchmark(args.points)),
    ):
        body = join_lines(LineEncoder().encode_lines(points))
        level1 = len(zlib.compress(body, 1))
        level9 = len(zlib.compress(body, 9))
        cpu = []
        for _ in range(args.rounds):
            began = time.process_time()
            zlib.compress(body, 1)
            cpu.append((time.process_time() - began) / args.points * 1e6)
        print(
            f"{name}: {len(body) / args.points:.0f} bytes/line, level 1: "
            f"{len(body) / level1:.1f}x smaller, level 9: {len(body) / level9:.1f}x, "
            f"level-1 CPU {min(cpu):.2f}-{max(cpu):.2f} us/line"
        )


if __name__ == "__main__":
    main()
