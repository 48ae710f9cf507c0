"""Real database servers for tests: InfluxDB 1.x, VictoriaMetrics, Prometheus, ClickHouse.

Every server runs as a child process on free ``127.0.0.1`` ports inside its own
temporary directory, which is removed on :meth:`close`.  Readiness is polled
with deadlines; nothing sleeps blindly.  A missing binary raises
:class:`RuntimeError` (tests fail, they never skip).  Every class is a context
manager (``with InfluxDB1() as db: ...`` starts and finally closes it), and an
``atexit`` hook kills whatever is still running when the interpreter exits.

Verified facts (InfluxDB 1.6.7, VictoriaMetrics 1.79.5, Prometheus 2.42.0):

* influxd has **no** ``/api/v2/write`` (404); write with ``POST /write?db=``.
  It accepts ``Content-Encoding: gzip``.  Unknown db -> 404; an unparsable
  line or a field type conflict -> 400 "partial write" (the valid lines are
  stored).  With ``wal-fsync-delay = "0s"`` the WAL is fsync'd before the 204,
  so points survive SIGKILL.  influxd (Go) sets ``SO_REUSEADDR``, so a restart
  rebinds the same port at once even with connections in TIME_WAIT.
* VictoriaMetrics ``/api/v2/write?org=&bucket=&precision=`` stores one series
  per field named ``<measurement>_<field>``; tags become labels.  ``bucket``
  and ``org`` add **no** label; only ``?db=`` (on ``/write`` or
  ``/api/v2/write``) adds ``db="<name>"``.  Timestamps are truncated to
  milliseconds, string fields are stored as 0, booleans as 0/1, points without
  timestamp get the server time, unparsable lines are logged and skipped while
  the request still gets 204.  Samples with equal timestamps are all kept
  (dedup is off).
* Fresh VictoriaMetrics data is invisible for about 1 s (existing series) to
  10 s (new series) unless ``/internal/force_flush`` is called; after it, data
  is visible at once **provided the query's end is explicit** (the default
  ``end`` is "now" truncated to whole seconds, which hides the last < 1 s).
  :meth:`VictoriaMetrics.export` does both.
* Prometheus 2.42 does its first scrape about 5 s after start (the scrape
  manager applies target updates on a fixed 5 s tick; no flag changes it).
"""

from __future__ import annotations

import atexit
import contextlib
import gzip as gzip_module
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeVar

__all__ = [
    "ClickHouse",
    "ClickHouseCluster",
    "HttpResponse",
    "InfluxDB1",
    "InfluxDatabase",
    "Prometheus",
    "ServerProcess",
    "VictoriaMetrics",
    "VictoriaMetricsWithAuth",
    "free_port",
    "http_request",
    "unique_name",
    "wait_until",
]

T = TypeVar("T")

LOOPBACK = "127.0.0.1"

# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1, never the same one twice."""
    with _ports_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port = int(sock.getsockname()[1])
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port


def unique_name(prefix: str = "test") -> str:
    """Return ``<prefix>_<12 hex chars>``, usable as database or metric name."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def wait_until(
    fn: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``fn`` until it returns a truthy value and return that value.

    Exceptions of the types in ``ignore`` count as a falsy result; any other
    exception propagates.  Raises ``AssertionError`` naming the last value (or
    exception) when ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        time.sleep(interval)


# Never route loopback requests through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HttpResponse(NamedTuple):
    """Status, body and headers of an HTTP exchange (unpacks as a tuple)."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body)


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    """Send one HTTP request; HTTP error statuses are returned, not raised.

    Connection errors and timeouts raise ``OSError`` (``URLError`` or
    ``TimeoutError``).
    """
    req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        try:
            return HttpResponse(exc.code, exc.read(), dict(exc.headers))
        finally:
            exc.close()


def spawn_app(
    script: Path, env: Mapping[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Run a test app script with ``env`` in its own session; stdout and stderr go to a log."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, str(script)],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name!r} not found on PATH: install the Debian package {package!r} "
            f"(apt-get install -y {package}); these tests need the real server"
        )
    return path


def _quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_label_value(value: str) -> str:
    """Quote a PromQL/MetricsQL label value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ----------------------------------------------------------------------------
# process management
# ----------------------------------------------------------------------------

_live: set[ServerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.close()


class ServerProcess:
    """Base class: one server binary in its own temp dir, restartable in place.

    Subclasses define :meth:`_command` and :meth:`_is_ready`, and may override
    :meth:`_prepare` (called before each start to write config files).
    """

    binary_name: str = ""
    package_name: str = ""
    #: Seconds allowed for the server to become ready.
    start_timeout: float = 30.0

    def __init__(self) -> None:
        self.binary = _require_binary(self.binary_name, self.package_name)
        self.dir = Path(tempfile.mkdtemp(prefix=f"luna-{self.binary_name}-"))
        self.log_path = self.dir / "server.log"
        #: Wall time of the last successful :meth:`start`, in seconds.
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._log_offset = 0
        self._closed = False
        _live.add(self)

    # -- to override ---------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files; called before every start."""

    def _reallocate_ports(self) -> None:
        """Pick new ports after a bind failure on the very first start."""

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- public --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running process, or ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the process exists and has not exited (it may be stopped)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Launch the server and wait until it answers its readiness probe.

        The first start retries with new ports if a port was grabbed in the
        meantime; later starts (see :meth:`restart`) keep the same ports.
        """
        if self._closed:
            raise RuntimeError("server was closed")
        if self.is_running:
            raise RuntimeError(f"{self.binary_name} already running (pid {self.pid})")
        deadline = time.monotonic() + (timeout if timeout is not None else self.start_timeout)
        began = time.monotonic()
        while True:
            self._spawn()
            if self._await_ready(deadline):
                self.startup_seconds = time.monotonic() - began
                self._started_once = True
                return self
            rc = self._proc.poll() if self._proc is not None else None
            log = self.log_tail()
            self._reap()
            bind_error = "address already in use" in log.lower()
            if rc is None or not bind_error or time.monotonic() >= deadline:
                state = "did not become ready" if rc is None else f"exited with {rc}"
                raise RuntimeError(
                    f"{self.binary_name} {state} (cmd: {' '.join(self._command())})\n"
                    f"--- {self.log_path} ---\n{log}"
                )
            if not self._started_once:
                self._reallocate_ports()
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (after SIGCONT), then SIGKILL after ``timeout``; return exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._proc = None
        return proc.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL, SIGSTOP, SIGCONT, ...); SIGKILL also reaps.

        SIGSTOP returns once every thread of the server is stopped.
        """
        if self._proc is None:
            raise RuntimeError(f"{self.binary_name} is not running")
        self._proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self._reap()
        elif sig == signal.SIGSTOP:
            wait_until(lambda: self._all_threads_stopped(), timeout=5.0)

    def _all_threads_stopped(self) -> bool:
        tasks = Path(f"/proc/{self._proc.pid}/task")
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in "Tt" for state in states)

    def restart(self, timeout: float | None = None) -> Self:
        """Stop (if running) and start again on the same ports and data dir."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete its temp dir (idempotent)."""
        if self._closed:
            return
        try:
            self.stop(timeout=5.0)
        finally:
            self._closed = True
            shutil.rmtree(self.dir, ignore_errors=True)
            _live.discard(self)

    def log_tail(self, max_chars: int = 4000) -> str:
        """Server output written since the last start (at most ``max_chars``)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except FileNotFoundError:
            return ""
        return data.decode(errors="replace")[-max_chars:]

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _spawn(self) -> None:
        self._prepare()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=self._env(),
            )

    def _await_ready(self, deadline: float) -> bool:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                if self._is_ready():
                    return True
            if time.monotonic() >= deadline:
                self.stop(timeout=2.0)
                return False
            time.sleep(0.01)

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


# ----------------------------------------------------------------------------
# InfluxDB 1.x
# ----------------------------------------------------------------------------


class InfluxDB1(ServerProcess):
    """``influxd`` (InfluxDB 1.x) with meta/data/wal dirs in its temp dir.

    Only the HTTP listener (``port``) and the RPC/backup listener
    (``rpc_port``) are bound, both on 127.0.0.1.  Reporting, the ``_internal``
    monitor store, HTTP access logging and pprof are off; logging is ``warn``.
    """

    binary_name = "influxd"
    package_name = "influxdb"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.rpc_port = free_port()
        self.config_path = self.dir / "influxdb.conf"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def _reallocate_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()

    def _prepare(self) -> None:
        d = self.dir
        self.config_path.write_text(
            f"""\
reporting-disabled = true
bind-address = "{LOOPBACK}:{self.rpc_port}"

[meta]
  dir = "{d / "meta"}"
  logging-enabled = false

[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{LOOPBACK}:{self.port}"
  log-enabled = false
  pprof-enabled = false
  max-row-limit = 0

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""
        )

    def _command(self) -> list[str]:
        return [self.binary, "-config", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        # INFLUXDB_* variables would override the config file.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _is_ready(self) -> bool:
        return self.ping(timeout=1.0)

    def ping(self, timeout: float = 1.0) -> bool:
        """Whether ``GET /ping`` answers 204 within ``timeout`` seconds."""
        try:
            return http_request("GET", f"{self.url}/ping", timeout=timeout).status == 204
        except OSError:
            return False

    def execute(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """Run a (writing) InfluxQL statement via ``POST /query``; return its results.

        Raises ``RuntimeError`` if the server reports an error.
        """
        return self._query("POST", q, db)

    def query_series(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """Raw ``series`` of the first statement (``name``, ``columns``, ``values``
        and, with GROUP BY, ``tags``); ``[]`` if nothing matched. Times are ns."""
        results = self._query("GET", q, db)
        return list(results[0].get("series", [])) if results else []

    def query(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """Rows of the first statement as ``{column: value}`` dicts, ns epoch times.

        Rows of all series are flattened in server order, each merged with its
        series' GROUP BY ``tags``; the series name is dropped (use
        :meth:`query_series` for it). JSON gives floats with integral values as
        ints (``1.0`` reads back as ``1``, which still compares equal).
        """
        rows: list[dict[str, Any]] = []
        for series in self.query_series(q, db):
            tags = series.get("tags") or {}
            columns = series["columns"]
            for values in series.get("values", []):
                rows.append({**tags, **dict(zip(columns, values, strict=True))})
        return rows

    def count(self, db: str, measurement: str) -> int:
        """Number of stored points of ``measurement``.

        Counts the rows of ``SELECT * FROM "m"`` (one row per point) because
        ``COUNT(*)`` counts each field separately and misses points lacking a
        field.  Points with the same series and timestamp are one point.
        """
        return len(self.query(f"SELECT * FROM {_quote_ident(measurement)}", db))

    def write_lines(
        self, db: str, body: bytes, precision: str = "ns", gzip: bool = False
    ) -> HttpResponse:
        """``POST /write?db=&precision=`` with line protocol; returns the raw response."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip:
            body = gzip_module.compress(body)
            headers["Content-Encoding"] = "gzip"
        params = urllib.parse.urlencode({"db": db, "precision": precision})
        return http_request("POST", f"{self.url}/write?{params}", body, headers)

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (idempotent)."""
        self.execute(f"CREATE DATABASE {_quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE`` (no error if missing)."""
        self.execute(f"DROP DATABASE {_quote_ident(name)}")

    def databases(self) -> list[str]:
        """Names from ``SHOW DATABASES``."""
        return [row["name"] for row in self.query("SHOW DATABASES")]

    def _query(self, method: str, q: str, db: str | None) -> list[dict[str, Any]]:
        params = {"q": q, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        url = f"{self.url}/query?{urllib.parse.urlencode(params)}"
        resp = http_request(method, url)
        payload = json.loads(resp.body) if resp.body else {}
        if resp.status != 200 or "error" in payload:
            raise RuntimeError(f"InfluxQL {q!r} failed: {resp.status} {resp.body!r}")
        results: list[dict[str, Any]] = payload.get("results", [])
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL {q!r} failed: {result['error']}")
        return results


@dataclass(frozen=True)
class InfluxDatabase:
    """One database on an :class:`InfluxDB1` server (see the ``influx_db`` fixture)."""

    server: InfluxDB1
    name: str

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return self.server.url

    def query(self, q: str) -> list[dict[str, Any]]:
        """:meth:`InfluxDB1.query` on this database."""
        return self.server.query(q, self.name)

    def query_series(self, q: str) -> list[dict[str, Any]]:
        """:meth:`InfluxDB1.query_series` on this database."""
        return self.server.query_series(q, self.name)

    def count(self, measurement: str) -> int:
        """:meth:`InfluxDB1.count` on this database."""
        return self.server.count(self.name, measurement)

    def write_lines(self, body: bytes, precision: str = "ns", gzip: bool = False) -> HttpResponse:
        """:meth:`InfluxDB1.write_lines` on this database."""
        return self.server.write_lines(self.name, body, precision, gzip)


# ----------------------------------------------------------------------------
# VictoriaMetrics
# ----------------------------------------------------------------------------


class VictoriaMetrics(ServerProcess):
    """Single-node ``victoria-metrics`` with fresh data readable at once.

    Flags: ``-retentionPeriod=100y`` (old test timestamps are kept),
    ``-search.latencyOffset=0s``, ``-search.disableCache``; no dedup.
    """

    binary_name = "victoria-metrics"
    package_name = "victoria-metrics"

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def _reallocate_ports(self) -> None:
        self.port = free_port()

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.dir / 'data'}",
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def _is_ready(self) -> bool:
        return http_request("GET", f"{self.url}/health", timeout=1.0).status == 200

    def write_lines(
        self,
        body: bytes,
        bucket: str = "bucket",
        org: str = "org",
        precision: str = "ns",
        gzip: bool = False,
    ) -> HttpResponse:
        """``POST /api/v2/write`` (as influxdb-client does); returns the raw response."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip:
            body = gzip_module.compress(body)
            headers["Content-Encoding"] = "gzip"
        params = urllib.parse.urlencode({"org": org, "bucket": bucket, "precision": precision})
        return http_request("POST", f"{self.url}/api/v2/write?{params}", body, headers)

    def flush(self) -> None:
        """``/internal/force_flush``: make everything ingested so far searchable."""
        resp = http_request("GET", f"{self.url}/internal/force_flush")
        if resp.status != 200:
            raise RuntimeError(f"force_flush failed: {resp.status} {resp.body!r}")

    def export(self, match: str) -> list[dict[str, Any]]:
        """Flush, then ``/api/v1/export?match[]=`` over all time.

        Returns one dict per series: ``metric`` (labels incl. ``__name__``),
        ``values`` and ``timestamps`` (ms).  ``match`` is a series selector,
        e.g. ``'{__name__=~"cpu_.*"}'`` or ``'cpu_usage{host="a"}'``.
        """
        self.flush()
        end = int(time.time()) + 3 * 86400  # VM rejects samples > now + 2 days
        params = urllib.parse.urlencode({"match[]": match, "start": 0, "end": end})
        resp = http_request("GET", f"{self.url}/api/v1/export?{params}")
        if resp.status != 200:
            raise RuntimeError(f"export {match!r} failed: {resp.status} {resp.body!r}")
        return [json.loads(line) for line in resp.body.splitlines() if line.strip()]

    def series_count(self, match: str) -> int:
        """Number of series matching the selector ``match``."""
        return len(self.export(match))

    def count_points(self, measurement: str, field: str) -> int:
        """Total samples of metric ``<measurement>_<field>`` across all its series."""
        selector = "{__name__=" + _quote_label_value(f"{measurement}_{field}") + "}"
        return sum(len(series["values"]) for series in self.export(selector))

    def wait_points(self, measurement: str, field: str, n: int, timeout: float = 10.0) -> int:
        """Wait until :meth:`count_points` reaches ``n``; return the count."""
        wait_until(lambda: self.count_points(measurement, field) >= n, timeout)
        return self.count_points(measurement, field)


# ----------------------------------------------------------------------------
# Prometheus
# ----------------------------------------------------------------------------


class Prometheus(ServerProcess):
    """``prometheus`` scraping one target every ``scrape_interval``.

    The first scrape happens about 5 s after start (see module docstring).
    """

    binary_name = "prometheus"
    package_name = "prometheus"

    def __init__(
        self,
        target: str,
        metrics_path: str = "/metrics",
        scrape_interval: str = "1s",
        job: str = "target",
    ) -> None:
        super().__init__()
        self.target = target
        self.metrics_path = metrics_path
        self.scrape_interval = scrape_interval
        self.job = job
        self.port = free_port()
        self.config_path = self.dir / "prometheus.yml"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def _reallocate_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": self.metrics_path,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }
        # JSON is valid YAML.
        self.config_path.write_text(json.dumps(config, indent=2))

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=warn",
        ]

    def _is_ready(self) -> bool:
        return http_request("GET", f"{self.url}/-/ready", timeout=1.0).status == 200

    def _api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        resp = http_request("GET", f"{self.url}{path}{query}")
        payload = json.loads(resp.body)
        if resp.status != 200 or payload.get("status") != "success":
            raise RuntimeError(f"{path} failed: {resp.status} {resp.body!r}")
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query ``/api/v1/query``; returns ``data.result``.

        Vector items look like ``{"metric": {...}, "value": [ts, "42"]}``.
        """
        data = self._api("/api/v1/query", {"query": expr})
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_query(self, expr: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll :meth:`query` until its result is non-empty and return it."""
        return wait_until(lambda: self.query(expr), timeout, interval=0.1)

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (``health``, ``lastError``, ...) from ``/api/v1/targets``."""
        data = self._api("/api/v1/targets")
        active: list[dict[str, Any]] = data["activeTargets"]
        return active


# ----------------------------------------------------------------------------
# ClickHouse
# ----------------------------------------------------------------------------

_CLICKHOUSE_CONFIG = """\
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>{host}</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <interserver_http_host>{host}</interserver_http_host>
  <interserver_http_port>{interserver_port}</interserver_http_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>5368709</mark_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <remote_servers>{remote_servers}</remote_servers>
</yandex>
"""
_CLICKHOUSE_USERS = """\
<?xml version="1.0"?>
<yandex>
  <profiles><default/><readonly><readonly>1</readonly></readonly></profiles>
  <users>
    <default><password/><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <writer><password>{password}</password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></writer>
    <reader><password/><networks><ip>127.0.0.1</ip></networks>
      <profile>readonly</profile><quota>default</quota></reader>
  </users>
  <quotas><default/></quotas>
</yandex>
"""


class ClickHouse(ServerProcess):
    """``clickhouse-server`` (18.16) with its own config, users and data in its temp dir.

    It runs as root with ``--config-file``. HTTP, native TCP and interserver ports are free
    loopback ports; ``remote_servers`` is the XML of cluster definitions (see
    :class:`ClickHouseCluster`). Users: ``default`` (no password), ``writer`` (password
    :attr:`PASSWORD`), ``reader`` (readonly). Verified facts (18.16.1): bad data answers 500
    with ``Code: 27`` and the like, an unknown table or database 404, a wrong password 401;
    JSONEachRow reads ``"a.b"`` keys into Nested columns and fills omitted keys with the type's
    default (NULL for Nullable); its float parser rounds about 2 % of values to a neighbouring
    double.
    """

    binary_name = "clickhouse-server"
    package_name = "clickhouse-server"
    PASSWORD = "ch-s3cret-pw"

    def __init__(self, remote_servers: str = "") -> None:
        super().__init__()
        self.remote_servers = remote_servers
        self._reallocate_ports()

    @property
    def url(self) -> str:
        """Base URL of the HTTP interface."""
        return f"http://{LOOPBACK}:{self.port}"

    def _reallocate_ports(self) -> None:
        self.port, self.tcp_port, self.interserver_port = free_port(), free_port(), free_port()

    def _prepare(self) -> None:
        (self.dir / "config.xml").write_text(
            _CLICKHOUSE_CONFIG.format(
                host=LOOPBACK,
                http_port=self.port,
                tcp_port=self.tcp_port,
                interserver_port=self.interserver_port,
                dir=self.dir,
                remote_servers=self.remote_servers,
            )
        )
        (self.dir / "users.xml").write_text(_CLICKHOUSE_USERS.format(password=self.PASSWORD))

    def _command(self) -> list[str]:
        return [self.binary, f"--config-file={self.dir / 'config.xml'}"]

    def _is_ready(self) -> bool:
        return http_request("GET", f"{self.url}/ping", timeout=1.0).body == b"Ok.\n"

    def query(self, sql: str, data: bytes | None = None) -> str:
        """Run one statement (``data``: the rows of an INSERT); its output, or RuntimeError."""
        params = {"output_format_json_quote_64bit_integers": "0"}
        if data is not None:
            params["query"] = sql
        url = f"{self.url}/?{urllib.parse.urlencode(params)}"
        resp = http_request("POST", url, sql.encode() if data is None else data)
        if resp.status != 200:
            raise RuntimeError(f"ClickHouse {sql[:200]!r} failed: {resp.status} {resp.body!r}")
        return resp.body.decode()

    def multiquery(self, script: str) -> None:
        """Pipe ``;``-separated statements into the real ``clickhouse-client --multiquery``."""
        client = _require_binary("clickhouse-client", "clickhouse-client")
        subprocess.run(
            [client, "--host", LOOPBACK, "--port", str(self.tcp_port), "--multiquery"],
            input=script.encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The rows of a SELECT (``FORMAT JSONEachRow`` is added), 64-bit ints as numbers."""
        text = self.query(f"{sql} FORMAT JSONEachRow")
        return [json.loads(line) for line in text.splitlines() if line]

    def count(self, table: str) -> int:
        """``count()`` of a table (``db.table``)."""
        return int(self.query(f"SELECT count() FROM {table}"))


class ClickHouseCluster:
    """Two ClickHouse servers, each a shard of the cluster :attr:`NAME` (on both nodes).

    >>> with ClickHouseCluster() as cluster:
    ...     cluster.nodes[0].query("SELECT 1")
    """

    NAME = "two_shards"

    def __init__(self) -> None:
        self.nodes = [ClickHouse(), ClickHouse()]
        shards = "".join(
            f"<shard><replica><host>{LOOPBACK}</host><port>{node.tcp_port}</port></replica></shard>"
            for node in self.nodes
        )
        for node in self.nodes:
            node.remote_servers = f"<{self.NAME}>{shards}</{self.NAME}>"

    def __enter__(self) -> Self:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both servers."""
        for node in self.nodes:
            node.close()


class VictoriaMetricsWithAuth(VictoriaMetrics):
    """VictoriaMetrics behind HTTP basic auth (user ``luna``, password ``right``): any other
    credentials get ``401`` with a body that is not JSON (``/health`` stays open)."""

    def _command(self) -> list[str]:
        return [*super()._command(), "-httpAuth.username=luna", "-httpAuth.password=right"]
