"""A Sanic service with MonitoringExtension, for delivery fault tests.

Configured by environment: ``APP_MONITORING`` (JSON of ``app.config.MONITORING``),
``APP_PORT``, ``APP_LOG_LEVEL`` (level of the root logger, default INFO; all log output
goes to stderr), ``APP_WORKERS`` (default 1: a single process) with ``APP_NAME`` (the app's
name, the same in every worker). Routes:

* ``GET /work``: an ordinary route; the extension emits its ``requests`` point.
* ``GET /burst?n=N``: records N ``requests`` points at once (many points, cheaply).
* ``GET /stats``: the writer's counters as JSON.

``/burst`` and ``/stats`` are excluded from request monitoring (``EXCLUDED``), so every
point is either the one of a ``/work`` request or one recorded by ``/burst``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

from sanic import Sanic
from sanic.response import json as json_response
from sanic.response import text

from luna_monitoring import MonitoringExtension

logging.basicConfig(
    level=os.environ.get("APP_LOG_LEVEL", "INFO"),
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)

EXCLUDED = "^GET:/(burst|stats)$"

# Workers re-import this module: with APP_WORKERS > 1 every process needs the same name.
app = Sanic(os.environ.get("APP_NAME") or f"delivery_{uuid.uuid4().hex[:8]}")
app.config.MONITORING = {"excluded_routes": [EXCLUDED], **json.loads(os.environ["APP_MONITORING"])}
app.extend(extensions=[MonitoringExtension])


@app.get("/work")
async def work(request):
    return text("ok")


@app.get("/burst")
async def burst(request):
    record = request.app.ctx.monitoring.record
    for _ in range(int(request.args.get("n", "1"))):
        record(
            "requests",
            tags={"route": "GET:/burst", "status_code": "200"},
            fields={"request_id": str(uuid.uuid4()), "execution_time": 0.001},
        )
    return text("ok")


@app.get("/stats")
async def stats(request):
    return json_response(request.app.ctx.monitoring.stats)


if __name__ == "__main__":
    workers = int(os.environ.get("APP_WORKERS", "1"))
    app.run(
        host="127.0.0.1",
        port=int(os.environ["APP_PORT"]),
        single_process=workers == 1,
        workers=workers,
        access_log=False,
        motd=False,
    )
