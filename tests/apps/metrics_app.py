"""A Sanic service with plugins and Prometheus, run as ``app.run(workers=N)`` in a subprocess.

Configured by environment: ``APP_MONITORING`` (JSON of ``app.config.MONITORING``),
``APP_PORT``, ``APP_WORKERS``, ``APP_EVENTS`` (file the lifecycle plugin appends
``<pid> <event>`` lines to). ``GET /ping`` counts in the app's own
prometheus-client counter ``app_pings`` and answers with the worker's pid; ``GET /stop`` shuts
the service down. On start the main process prints ``multiproc_dir=<PROMETHEUS_MULTIPROC_DIR>``
to stdout.
"""

from __future__ import annotations

import json
import os

from prometheus_client import Counter
from sanic import Sanic
from sanic.response import text

from luna_monitoring import BaseRequestMonitoringPlugin, MonitoringExtension


class LifecyclePlugin(BaseRequestMonitoringPlugin):
    """Appends ``<pid> created|initialized|point <series> <request_id>|closed`` lines."""

    def __init__(self, app: Sanic) -> None:
        super().__init__(app)
        self._fd = os.open(os.environ["APP_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._event("created")

    def _event(self, event: str) -> None:
        os.write(self._fd, f"{os.getpid()} {event}\n".encode())

    async def initialize(self) -> None:
        self._event("initialized")

    async def flush_point_to_monitoring(self, point) -> None:
        self._event(f"point {point.series} {point.fields.get('request_id')}")

    async def close(self) -> None:
        self._event("closed")
        os.close(self._fd)


# The app's own metric: in the workers PROMETHEUS_MULTIPROC_DIR is set before this import.
PINGS = Counter("app_pings", "Pings answered.")
app = Sanic("metrics_app")
app.config.MONITORING = json.loads(os.environ["APP_MONITORING"])
app.extend(extensions=[MonitoringExtension(plugins=[LifecyclePlugin])])


@app.get("/ping")
async def ping(request):
    PINGS.inc()
    return text(str(os.getpid()))


@app.get("/stop")
async def stop(request):
    """Shut the service down as SIGTERM would, but also during startup: Sanic 25.12's main
    process hangs on a signal that comes before it has seen every worker's ack."""
    request.app.m.terminate()
    return text("stopping")


@app.main_process_ready
async def announce(app: Sanic) -> None:
    print(f"multiproc_dir={os.environ.get('PROMETHEUS_MULTIPROC_DIR')}", flush=True)


if __name__ == "__main__":
    app.run(
        host="127.0.0.1",
        port=int(os.environ["APP_PORT"]),
        workers=int(os.environ["APP_WORKERS"]),
        access_log=False,
    )
