"""A throw-away InfluxDB 1.x (``influxd``) for the demo: own config and data in a temp dir,
free ports on 127.0.0.1, removed on exit.

>>> with InfluxD() as influx:
...     influx.create_database("luna_monitoring")
...     influx.query('SELECT COUNT(*) FROM "requests"', "luna_monitoring")
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

LOOPBACK = "127.0.0.1"
_CONFIG = """\
reporting-disabled = true
bind-address = "{host}:{rpc_port}"
[meta]
  dir = "{dir}/meta"
  logging-enabled = false
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "{host}:{port}"
  log-enabled = false
[logging]
  level = "warn"
"""
# Loopback requests never go through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> bytes:
    """One HTTP exchange on loopback; the body of a 2xx answer, else ``HTTPError``."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    with _opener.open(request, timeout=timeout) as response:
        return response.read()


class InfluxD:
    """``influxd`` run from its own temp dir; use as a context manager."""

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        binary = shutil.which("influxd")
        if binary is None:
            raise RuntimeError("influxd not found: install the Debian package 'influxdb'")
        self.dir = Path(tempfile.mkdtemp(prefix="luna-demo-influxd-"))
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = self.dir / "influxdb.conf"
        config.write_text(
            _CONFIG.format(host=LOOPBACK, port=self.port, rpc_port=free_port(), dir=self.dir)
        )
        self._log = (self.dir / "influxd.log").open("wb")
        self._process = subprocess.Popen(
            [binary, "-config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._start_timeout_s = start_timeout_s

    def __enter__(self) -> Self:
        deadline = time.monotonic() + self._start_timeout_s
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "influxd.log").read_text(errors="replace")[-2000:]
                self.close()
                raise RuntimeError(f"influxd did not start:\n{log}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ping(self) -> bool:
        try:
            http("GET", f"{self.url}/ping", timeout=1.0)
        except OSError:
            return False
        return True

    def query(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """The series of the first statement's result (``name``, ``columns``, ``values``)."""
        params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
        payload = json.loads(http("POST", f"{self.url}/query?{urllib.parse.urlencode(params)}"))
        result = payload["results"][0]
        if "error" in result:
            raise RuntimeError(f"{q!r} failed: {result['error']}")
        return result.get("series", [])

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name``."""
        self.query(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        """Stop influxd and remove its directory."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
