"""``make demo``: the example service against a real InfluxDB, end to end, in seconds.

Starts a throw-away InfluxDB 1.x and the example service with 2 workers (configured by
environment variables, with the JSON-lines plugin and Prometheus on): ``python -m
example_app`` on Sanic, or with ``--framework aiohttp`` (``make demo FRAMEWORK=aiohttp``) the
aiohttp app under gunicorn's ``aiohttp.GunicornWebWorker``; sends 200 requests
with images made here (JPEG and PNG, some turned by EXIF orientation, 25 failing on
purpose), then prints every series with its point count and one point read back from
InfluxDB, and checks the counts against what was sent, the writer's counters, the plugin's
file and ``/metrics``; ends by writing the HTML report of the traffic
(``python -m luna_monitoring report``) and printing its path. Stops all it started; exits 1
if a check fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw

from luna_monitoring.core.schema import SERIES
from luna_monitoring.dashboards import dashboard_dir

from .influxd import LOOPBACK, InfluxD, free_port, http

DATABASE = "luna_monitoring"
WORKERS = 2
MAX_IMAGE_SIZE = 500_000
OK_PER_KIND = 25
FAILING_PER_KIND = 5
PLUGIN = "example_app.plugins:JsonLinesPlugin"
_ROOT = Path(__file__).resolve().parent.parent
_STATS_LINE = re.compile(r"monitoring stats: (\{.*\})")
_COUNTERS = ("points_written", "points_dropped", "write_errors", "points_buffered")
_METRIC = "request_count_total{"


class Call(NamedTuple):
    """One request of the demo and the status it should get."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    expected: int


def make_image(rng: random.Random, fmt: str, orientation: int = 1) -> bytes:
    """A gradient with a light ellipse (a "face") and noise, encoded as ``fmt``."""
    width, height = rng.choice(((320, 240), (640, 480), (240, 320), (400, 400)))
    image = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").rotate(rng.choice((0, 90, 180))).resize((width, height))
            for _ in range(3)
        ],
    )
    draw = ImageDraw.Draw(image)
    x, y = rng.randrange(width // 2), rng.randrange(height // 2)
    draw.ellipse((x, y, x + width // 3, y + height // 3), fill=(230, 190, 170))
    small = (width // 8, height // 8)
    noise = Image.frombytes("L", small, rng.randbytes(small[0] * small[1])).resize((width, height))
    image = Image.blend(image, noise.convert("RGB"), rng.uniform(0.05, 0.3))
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(out, fmt, **({"exif": exif} if fmt == "JPEG" else {}))
    return out.getvalue()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with the files under the field ``images``."""
    boundary = "luna-demo-boundary"
    parts = []
    for name, body in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + body + b"\r\n")
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


_FACES = "face_detection,landmarks5,landmarks68,head_pose,gaze_direction,livenessv1,eyes,"
_FACES += "mouth_state,emotions,mask,glasses,face_warp_quality"
OK_PATHS = (
    f"/sdk?estimate={_FACES}",
    "/sdk?estimate=face_descriptor,basic_attributes,deepfake&deepfake_mode=2",
    "/sdk?estimate=body_detection,landmarks17,body_attributes,body_descriptor",
    "/sdk?estimate=human_detection,people_count,face_redetection,body_redetection,"
    "image_color_type,image_orientation",
    "/sdk?use_exif_info=0",
    "/iso",
)
BATCH_PATH = "/sdk?estimate=face_descriptor,basic_attributes,body_descriptor,livenessv1&aggregate=1"


def plan(rng: random.Random) -> list[Call]:
    """About 200 requests: every kind of estimation, batches, and failures on purpose."""
    images = [
        make_image(rng, fmt, orientation)
        for fmt, orientation in (("JPEG", 1), ("JPEG", 6), ("JPEG", 8), ("JPEG", 3), ("PNG", 1))
        for _ in range(3)
    ]
    jpeg = "image/jpeg"
    calls = [
        Call("POST", path, rng.choice(images), jpeg, 200)
        for path in OK_PATHS
        for _ in range(OK_PER_KIND)
    ]
    for n in range(OK_PER_KIND):
        body, content_type = multipart([(f"{n}-{i}.jpg", rng.choice(images)) for i in range(3)])
        calls.append(Call("POST", BATCH_PATH, body, content_type, 200))
    failing = (
        Call("POST", "/sdk", b"this is not an image", jpeg, 400),
        Call("POST", "/sdk", b"", jpeg, 400),
        Call("POST", "/iso", rng.randbytes(MAX_IMAGE_SIZE + 1), jpeg, 413),
        Call("POST", "/sdk?estimate=teleportation", images[0], jpeg, 400),
        Call("GET", "/no/such/route", None, jpeg, 404),
    )
    calls += [call for call in failing for _ in range(FAILING_PER_KIND)]
    rng.shuffle(calls)
    return calls


def send(base_url: str, call: Call) -> int:
    """Send one call; return the answer's status."""
    try:
        http(
            call.method,
            base_url + call.path,
            call.body,
            headers={"Content-Type": call.content_type},
        )
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    return 200


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until true; ``RuntimeError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


def ready(base_url: str) -> bool:
    """Whether the service answers (on a route without monitoring)."""
    try:
        http("GET", f"{base_url}/monitoring/stats", timeout=1.0)
    except OSError:
        return False
    return True


def counts(influx: InfluxD) -> dict[str, int]:
    """Points per measurement (the largest per-field count: every point has that field)."""
    found = {}
    for series in influx.query("SELECT COUNT(*) FROM /.*/", DATABASE):
        found[series["name"]] = max(v for v in series["values"][0][1:] if v is not None)
    return found


def sample(influx: InfluxD, name: str) -> str:
    """One point of ``name`` as ``tags; fields`` text."""
    found = influx.query(f'SELECT * FROM "{name}" LIMIT 1', DATABASE)
    if not found:
        return ""
    row = dict(zip(found[0]["columns"], found[0]["values"][0], strict=True))
    tags = set(SERIES[name].tags) | {"service"}
    shown_tags = " ".join(f"{k}={row[k]}" for k in sorted(tags) if k != "service" and row.get(k))
    fields = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if k not in tags and k != "time" and v is not None and v != 0
    )
    text = f"{shown_tags}; {fields}" if shown_tags else fields
    return text if len(text) <= 90 else text[:87] + "..."


def worker_stats(log: str) -> list[dict[str, int]]:
    """The final counters each worker logged at shutdown."""
    return [json.loads(match) for match in _STATS_LINE.findall(log)]


FRAMEWORKS = ("sanic", "aiohttp")
_COMMANDS = {
    "sanic": [sys.executable, "-m", "example_app"],
    "aiohttp": [
        sys.executable, "-m", "gunicorn", "-c", "python:example_app.gunicorn_conf",
        "example_app.aiohttp_app:create_app()",
    ],
}  # fmt: skip
_STOP_SIGNALS = {"sanic": signal.SIGINT, "aiohttp": signal.SIGTERM}  # each one's graceful stop


def start_service(
    influx: InfluxD,
    port: int,
    workdir: Path,
    log: io.BufferedWriter,
    framework: str = "sanic",
    more_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The example service on ``framework`` configured by environment variables, as in
    production (``more_env`` adds or overrides some)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LUNA_MONITORING_", "LUNA_EXAMPLE_"))
    }
    env |= {
        "LUNA_MONITORING_VERSION": "1",
        "LUNA_MONITORING_PORT": str(influx.port),
        "LUNA_MONITORING_DATABASE": DATABASE,
        "LUNA_MONITORING_FLUSHING_PERIOD": "0.5",
        "LUNA_MONITORING_PLUGINS": json.dumps([PLUGIN]),
        "LUNA_MONITORING_PROMETHEUS": json.dumps({"enabled": True}),
        "SANIC_MONITORING_JSONL_PATH": str(workdir / "points.jsonl"),
        "MONITORING_JSONL_PATH": str(workdir / "points.jsonl"),
        "LUNA_EXAMPLE_PORT": str(port),
        "LUNA_EXAMPLE_WORKERS": str(WORKERS),
        "LUNA_EXAMPLE_MAX_IMAGE_SIZE": str(MAX_IMAGE_SIZE),
        "LUNA_EXAMPLE_LIVENESS_BALANCE": "40",
        "LUNA_EXAMPLE_LIVENESS_WARNING_THRESHOLD": "20",
        **(more_env or {}),
    }
    if framework == "aiohttp":  # gunicorn's workers sum their metrics in a shared directory
        (workdir / "prometheus").mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus")
    return subprocess.Popen(
        _COMMANDS[framework],
        cwd=_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_service(process: subprocess.Popen[bytes], framework: str = "sanic") -> None:
    """SIGINT for Sanic, SIGTERM for gunicorn (graceful: workers flush), then SIGKILL to
    the group after 30 s."""
    if process.poll() is None:
        process.send_signal(_STOP_SIGNALS[framework])
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def prometheus_requests(base_url: str) -> int:
    """The sum of ``request_count_total`` on ``/metrics`` (all workers)."""
    text = http("GET", f"{base_url}/metrics").decode()
    return round(
        sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(_METRIC))
    )


class Outcome(NamedTuple):
    """What the run observed besides the database."""

    calls: list[Call]
    statuses: list[int]
    prometheus_requests: int
    worker_stats: list[dict[str, int]]
    plugin_lines: int


def run_service(
    influx: InfluxD,
    calls: list[Call],
    workdir: Path,
    framework: str = "sanic",
    more_env: Mapping[str, str] | None = None,
) -> Outcome:
    """Start the service on ``framework`` (with ``more_env``), send ``calls``, wait for their
    points in ``influx``, stop it gracefully."""
    port = free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    log_path = workdir / "example_app.log"
    with log_path.open("wb") as log:
        service = start_service(influx, port, workdir, log, framework, more_env)
        try:
            wait_for(lambda: ready(base_url), 60, "example_app to start")
            print(
                f"example_app on {framework} at {base_url} with {WORKERS} workers; "
                f"sending {len(calls)} requests"
            )
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda call: send(base_url, call), calls))
            wait_for(lambda: counts(influx).get("requests", 0) >= len(calls), 30, "the points")
            wait_for(lambda: prometheus_requests(base_url) >= len(calls), 10, "the metrics")
            metrics = prometheus_requests(base_url)
        finally:
            stop_service(service, framework)
    output = log_path.read_text(errors="replace")
    lines = len((workdir / "points.jsonl").read_bytes().splitlines())
    return Outcome(calls, statuses, metrics, worker_stats(output), lines)


def report(influx: InfluxD, outcome: Outcome) -> bool:
    """Print the table and the checks; whether every check passed."""
    found = counts(influx)
    print(f"\n{'series':<28} {'points':>7}  sample point read back (tags; fields)")
    for name in SERIES:
        print(f"{name:<28} {found.get(name, 0):>7}  {sample(influx, name)}")
    calls = outcome.calls
    sent, failing = len(calls), sum(call.expected >= 400 for call in calls)
    as_expected = sum(
        got == call.expected for call, got in zip(calls, outcome.statuses, strict=True)
    )
    totals = {key: sum(s.get(key, 0) for s in outcome.worker_stats) for key in _COUNTERS}
    stored = sum(found.values())
    counters = " ".join(f"{key}={value}" for key, value in totals.items())
    checks = [
        (
            f"series with points: {len(found.keys() & SERIES.keys())}/{len(SERIES)}",
            found.keys() >= SERIES.keys(),
        ),
        (
            f"requests: {found.get('requests', 0)} points for {sent} requests sent",
            found.get("requests") == sent,
        ),
        (
            f"errors: {found.get('errors', 0)} points for {failing} failing requests sent",
            found.get("errors") == failing,
        ),
        (f"answers as expected: {as_expected}/{sent}", as_expected == sent),
        (
            f"writer stats of {len(outcome.worker_stats)} workers: {counters}; "
            f"InfluxDB holds {stored} points",
            len(outcome.worker_stats) == WORKERS and totals["points_written"] == stored,
        ),
        (
            f"plugin JsonLinesPlugin: {outcome.plugin_lines} points in points.jsonl",
            outcome.plugin_lines == stored,
        ),
        (
            f"Prometheus /metrics: request_count_total = {outcome.prometheus_requests}",
            outcome.prometheus_requests == sent,
        ),
    ]
    print()
    for text, ok in checks:
        print(f"{'ok ' if ok else 'BAD'} {text}")
    return all(ok for _, ok in checks)


REPORT_PATH = Path(tempfile.gettempdir()) / "luna-demo-report.html"


def write_html_report(influx: InfluxD, workdir: Path) -> bool:
    """``python -m luna_monitoring report`` of the traffic into :data:`REPORT_PATH`; prints
    its line (the file's path); whether it succeeded."""
    config = workdir / "monitoring.json"
    config.write_text(json.dumps({"version": 1, "port": influx.port, "database": DATABASE}))
    command = [sys.executable, "-m", "luna_monitoring", "report", str(config), "--since", "1h"]
    done = subprocess.run(
        [*command, "--out", str(REPORT_PATH)], capture_output=True, text=True, timeout=120
    )
    print(f"\nreport: {(done.stdout + done.stderr).strip()}")
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, default="sanic")
    framework = parser.parse_args(argv).framework
    began = time.monotonic()
    calls = plan(random.Random(2024))
    with InfluxD() as influx, tempfile.TemporaryDirectory(prefix="luna-demo-") as workdir:
        influx.create_database(DATABASE)
        print(f"InfluxDB 1.x at {influx.url}, database {DATABASE!r}")
        try:
            outcome = run_service(influx, calls, Path(workdir), framework)
        except RuntimeError as exc:
            print(f"FAILED: {exc}")
            return 1
        passed = report(influx, outcome)
        passed = write_html_report(influx, Path(workdir)) and passed
    print(f"\nGrafana dashboards for these series (InfluxQL): {dashboard_dir()}")
    print("write them out for Grafana: python -m luna_monitoring dashboards --out DIR")
    print(f"done in {time.monotonic() - began:.1f} s; everything started was stopped")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
