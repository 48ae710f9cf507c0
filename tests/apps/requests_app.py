"""A Sanic service monitored by MonitoringExtension, run as ``app.run(workers=N)``.

Configured by environment: ``APP_MONITORING`` (JSON of ``app.config.MONITORING``),
``APP_PORT``, ``APP_WORKERS`` and optionally ``APP_LOG_LEVEL`` (the app then configures the
root logger at that level, as a service would). ``GET /pid`` answers with the pid of the worker
that served it;
``GET /workers`` with the manager's state of each server worker (``ACKED`` once it is up).
With ``APP_WRONG_ORDER`` set, ``POST /sdk`` has ``@monitored_estimation`` above the route
decorator, which must keep the service from starting.
"""

from __future__ import annotations

import json
import logging
import os

from sanic import Sanic
from sanic.response import json as json_response
from sanic.response import text

from luna_monitoring import MonitoringExtension, monitored_estimation

if os.environ.get("APP_LOG_LEVEL"):
    logging.basicConfig(level=os.environ["APP_LOG_LEVEL"], format="%(levelname)s %(message)s")

app = Sanic("requests_app")
app.config.MONITORING = json.loads(os.environ["APP_MONITORING"])
app.extend(extensions=[MonitoringExtension], built_in_extensions=False)


@app.get("/pid")
async def pid(request):
    return text(str(os.getpid()))


if os.environ.get("APP_WRONG_ORDER"):

    @monitored_estimation
    @app.post("/sdk")
    async def sdk(request):
        return text("ok")


@app.get("/workers")
async def workers(request):
    states = request.app.m.workers
    return json_response(
        {name: state.get("state") for name, state in states.items() if state.get("server")}
    )


if __name__ == "__main__":
    app.run(
        host="127.0.0.1",
        port=int(os.environ["APP_PORT"]),
        workers=int(os.environ["APP_WORKERS"]),
        access_log=False,
        motd=False,
    )
