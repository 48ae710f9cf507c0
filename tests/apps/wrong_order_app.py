"""A service whose ``@monitored_estimation`` sits above ``@app.post``: it must not start.

``APP_PORT`` and ``APP_WORKERS`` from the environment.
"""

from __future__ import annotations

import os

from sanic import Sanic
from sanic.response import text

from luna_monitoring import MonitoringExtension, monitored_estimation

app = Sanic("wrong_order_app")
app.config.MONITORING = {"version": 1}
app.extend(extensions=[MonitoringExtension], built_in_extensions=False)


@monitored_estimation
@app.post("/sdk")
async def sdk(request):
    return text("ok")


if __name__ == "__main__":
    app.run(
        host="127.0.0.1",
        port=int(os.environ["APP_PORT"]),
        workers=int(os.environ["APP_WORKERS"]),
        motd=False,
    )
