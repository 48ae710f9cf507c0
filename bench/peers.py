"""The request-path cost of luna_monitoring beside its peers, on a Sanic hello world.

Every variant is the same single-process Sanic app (``GET /`` -> ``text("hello")``, access
log off, no sanic-ext built-in extensions) with one kind of monitoring:

* ``bare``: none (the baseline of every ratio).
* ``luna_monitoring``: ``MonitoringExtension`` writing every ``requests`` point to a local
  InfluxDB 1.x and echoing ``LUNA-Request-Id``; proof: the points counted in InfluxDB.
* ``prometheus-sanic``, ``sanic-prometheus-mon``: in-memory Prometheus counters and a
  latency histogram; proof: their request counter read from the registry.
* ``opentelemetry-instrumentation-sanic``: a server span per request through the SDK's
  ``TracerProvider``, ended spans counted and discarded by a span processor.
* ``ddtrace``: ``patch(sanic=True)``, traces counted and dropped by a trace filter (nothing
  reaches an agent).
* ``elastic-apm``: the Sanic contrib with ``DISABLE_SEND``; proof: transactions handed to
  the client's queue.
* ``sentry-sdk``: the Sanic integration with ``traces_sample_rate=1.0``; proof: transactions
  handed to a transport that discards them.

Each peer is installed in its own virtual environment under ``bench/.peers/`` (made with
``uv`` on first use, beside the same Sanic as the project's venv), so that its pins cannot
change the others. A variant whose proof counts fewer recordings than requests served is
reported as inactive, and a peer that does not start on this Sanic is reported as such with
the first line of its error: a peer doing nothing cannot look cheap.

The app runs pinned to CPU 0, wrk and InfluxDB to CPU 1. Each round runs every variant once
in a rotated order, each right after a bare run, for ``--seconds`` after a 1 s warm-up; the
figures are medians over the rounds of the per-round ratios to the bare run beside it.

    python bench/peers.py [--rounds 4] [--seconds 5] [--connections 32] [--peers NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from load import APP_CPU, LOAD_CPU, TICKS_PER_S, cpu_ticks, parse_or_serve, wrk  # noqa: E402
from servers import InfluxDB1, free_port, http_request, unique_name, wait_until  # noqa: E402

PEERS_DIR = ROOT / "bench" / ".peers"
COUNT_PATH = "/__recorded"
"""A route every variant serves after the load: how many requests its monitoring recorded."""


class Peer(NamedTuple):
    """A peer: what its venv needs beside Sanic (empty: the project's own venv)."""

    requirements: tuple[str, ...]


PEERS: dict[str, Peer] = {
    "bare": Peer(()),
    "luna_monitoring": Peer(()),
    "prometheus-sanic": Peer(("prometheus-sanic==3.0.0",)),
    "sanic-prometheus-mon": Peer(("sanic-prometheus-mon==0.3.9",)),
    "opentelemetry-instrumentation-sanic": Peer(
        ("opentelemetry-instrumentation-sanic==1.0.0", "opentelemetry-sdk")
    ),
    "ddtrace": Peer(("ddtrace==4.16.0",)),
    "elastic-apm": Peer(("elastic-apm==6.26.2",)),
    "sentry-sdk": Peer(("sentry-sdk[sanic]==2.76.0",)),
}


# -- the app of each variant (``--serve``, run by the variant's own interpreter) ------------


def _prometheus_counter(registry, name: str):
    def count() -> int:
        return round(
            sum(
                sample.value
                for metric in registry.collect()
                for sample in metric.samples
                if sample.name in (name, f"{name}_total")
            )
        )

    return count


def _setup_prometheus_sanic(app):
    from prometheus_client import REGISTRY
    from prometheus_sanic import monitor

    monitor(app).expose_endpoint()
    return _prometheus_counter(REGISTRY, "sanic_request_count")


def _setup_sanic_prometheus_mon(app):
    from prometheus_client import REGISTRY
    from sanic_prometheus import monitor

    monitor(app).expose_endpoint()
    return _prometheus_counter(REGISTRY, "sanic_request_count")


def _setup_opentelemetry(app_factory):
    from opentelemetry.instrumentation.sanic import SanicInstrumentor
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    ended = [0]

    class Counting(SpanProcessor):
        def on_end(self, span) -> None:
            ended[0] += 1

    provider = TracerProvider()
    provider.add_span_processor(Counting())
    SanicInstrumentor().instrument(tracer_provider=provider)
    return app_factory(), lambda: ended[0]


def _setup_ddtrace(app_factory):
    from ddtrace import patch
    from ddtrace.trace import TraceFilter, tracer

    traces = [0]

    class Counting(TraceFilter):
        def process_trace(self, trace):
            traces[0] += 1
            return None  # dropped: nothing is sent

    patch(sanic=True)
    tracer.configure(trace_processors=[Counting()])
    return app_factory(), lambda: traces[0]


def _setup_elastic_apm(app):
    from elasticapm.contrib.sanic import ElasticAPM

    apm = ElasticAPM(app, config={"SERVICE_NAME": "bench", "DISABLE_SEND": True})
    queued = [0]
    tracer = apm._client.tracer
    queue = tracer.queue_func

    def counting_queue(event_type, data, flush=False):
        queued[0] += event_type == "transaction"
        return queue(event_type, data, flush)

    tracer.queue_func = counting_queue
    return lambda: queued[0]


def _setup_sentry(app_factory):
    import sentry_sdk
    from sentry_sdk.integrations.sanic import SanicIntegration
    from sentry_sdk.transport import Transport

    transactions = [0]

    class Discarding(Transport):
        def capture_envelope(self, envelope) -> None:
            transactions[0] += sum(item.type == "transaction" for item in envelope.items)

    sentry_sdk.init(
        dsn="http://key@127.0.0.1:9/1",
        traces_sample_rate=1.0,
        transport=Discarding,
        integrations=[SanicIntegration()],
        default_integrations=False,
    )
    return app_factory(), lambda: transactions[0]


def serve(variant: str, port: int, influx_port: int, database: str) -> None:
    """Run the app of ``variant`` in this process until SIGINT."""
    from sanic import Sanic, json, text

    def make_app() -> Sanic:
        app = Sanic("bench_peers")
        # Sanic loads sanic-ext's built-in extensions (+15-21 µs a request) into any app when
        # sanic-ext is installed, as in the project's venv, unless it is told not to:
        # luna_monitoring does so in its app.extend(), the others here.
        app.config.AUTO_EXTEND = variant == "luna_monitoring"
        return app

    count = None
    if variant in ("opentelemetry-instrumentation-sanic", "ddtrace", "sentry-sdk"):
        setup = {
            "opentelemetry-instrumentation-sanic": _setup_opentelemetry,
            "ddtrace": _setup_ddtrace,
            "sentry-sdk": _setup_sentry,
        }[variant]
        app, count = setup(make_app)  # these patch Sanic before the app exists
    else:
        app = make_app()
    if variant == "luna_monitoring":
        from luna_monitoring import MonitoringExtension

        app.config.MONITORING = {"version": 1, "port": influx_port, "database": database}
        app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
    elif variant == "prometheus-sanic":
        count = _setup_prometheus_sanic(app)
    elif variant == "sanic-prometheus-mon":
        count = _setup_sanic_prometheus_mon(app)
    elif variant == "elastic-apm":
        count = _setup_elastic_apm(app)

    @app.get("/")
    async def hello(request):
        return text("hello")

    @app.get(COUNT_PATH)
    async def recorded(request):
        return json({"recorded": count() if count else None})

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


# -- the driver --------------------------------------------------------------------------


def interpreter(variant: str) -> str:
    """The Python of ``variant``'s venv, made with uv on first use."""
    requirements = PEERS[variant].requirements
    if not requirements:
        return sys.executable
    venv = PEERS_DIR / variant
    python = venv / "bin" / "python"
    if not python.exists():
        import sanic

        uv = [sys.executable, "-m", "uv"]
        subprocess.run([*uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        subprocess.run(
            [*uv, "pip", "install", "-q", f"sanic=={sanic.__version__}", *requirements],
            env=os.environ | {"VIRTUAL_ENV": str(venv)},
            check=True,
        )
    return str(python)


class Run(NamedTuple):
    """One variant under load: what it served, at what CPU cost, and what it recorded."""

    rps: float
    cpu_us: float
    served: int
    recorded: int | None
    error: str | None = None


def run_variant(variant: str, influx: InfluxDB1, seconds: int, connections: int) -> Run:
    """Start ``variant`` on APP_CPU, load it with wrk, read its proof, stop it."""
    port, database = free_port(), unique_name("peers")
    influx.create_database(database)
    log = PEERS_DIR / f"{variant}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", str(APP_CPU), interpreter(variant), __file__, "--serve", variant,
             str(port), str(influx.port), database],
            stdout=out, stderr=subprocess.STDOUT,
            env=os.environ | {"DD_TRACE_AGENT_URL": "http://127.0.0.1:9",
                              "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
                              "DD_REMOTE_CONFIGURATION_ENABLED": "false"},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: process.poll() is not None or http_request("GET", f"{base}/").status == 200,
                timeout=60,
                ignore=(OSError,),
            )
        if process.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
            return Run(0.0, 0.0, 0, None, error=lines[-1][:160])
        warm = 1 + wrk(port, 1, connections)
        ticks = cpu_ticks(process.pid)
        began = time.monotonic()
        served = wrk(port, seconds, connections)
        elapsed = time.monotonic() - began
        cpu_s = (cpu_ticks(process.pid) - ticks) / TICKS_PER_S
        recorded = json.loads(http_request("GET", f"{base}{COUNT_PATH}").body)["recorded"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if variant == "luna_monitoring":
        recorded = influx.count(database, "requests")
    influx.drop_database(database)
    return Run(served / elapsed, cpu_s / served * 1e6, warm + served, recorded)


def report(pairs: dict[str, list[tuple[Run, Run]]]) -> None:
    """Medians over rounds of the ratios to the bare run beside each variant."""

    def median(values) -> float:
        return statistics.median(list(values))

    print(
        f"\n{'variant':36} {'req/s':>7} {'ratio':>6} {'CPU µs/req':>10} {'added µs':>8}"
        "  recorded/served"
    )
    for variant, runs in pairs.items():
        failed = next((run.error for run, _ in runs if run.error), None)
        if failed:
            print(f"{variant:36} does not start on this Sanic: {failed}")
            continue
        proof = ", ".join(f"{run.recorded}/{run.served}" for run, _ in runs)
        inactive = any(
            variant != "bare" and (run.recorded or 0) < run.served - 100 for run, _ in runs
        )
        print(
            f"{variant:36} {median(r.rps for r, _ in runs):7.0f} "
            f"{median(r.rps / b.rps for r, b in runs):6.3f} "
            f"{median(r.cpu_us for r, _ in runs):10.2f} "
            f"{median(r.cpu_us - b.cpu_us for r, b in runs):8.2f}  {proof}"
            + ("  INACTIVE: records less than it serves" if inactive else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--peers", nargs="+", default=[p for p in PEERS if p != "bare"])
    args = parse_or_serve(parser, serve)
    if args is None:
        return
    unknown = set(args.peers) - PEERS.keys()
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}; known: {', '.join(PEERS)}")
    os.sched_setaffinity(0, {LOAD_CPU})  # InfluxDB (a child) runs beside wrk
    for variant in args.peers:
        interpreter(variant)
    pairs: dict[str, list[tuple[Run, Run]]] = {variant: [] for variant in args.peers}
    with InfluxDB1() as influx:
        for round_ in range(args.rounds):
            shift = round_ % len(args.peers)
            for variant in args.peers[shift:] + args.peers[:shift]:
                base = run_variant("bare", influx, args.seconds, args.connections)
                run = run_variant(variant, influx, args.seconds, args.connections)
                pairs[variant].append((run, base))
                print(f"round {round_ + 1} {variant:36} {run._asdict()} bare {base.rps:.0f}/s",
                      flush=True)  # fmt: skip
    report(pairs)


if __name__ == "__main__":
    main()
