"""The same test service on Sanic and on aiohttp: the routes the framework suites call.

``build(framework, config)`` -> an app of either kind whose routes behave alike (spelled
each framework's way): handlers that answer, sleep, stream, fail, tag their request point,
record estimations (a function handler and a class-based view) and report licences. Run as
a program (``python tests/apps/equivalent.py aiohttp``) it serves the aiohttp one with
``web.run_app`` on ``APP_PORT``, configured by ``APP_MONITORING``; ``gunicorn
equivalent:gunicorn_app`` serves it with gunicorn's aiohttp worker.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sys
from decimal import Decimal
from fractions import Fraction
from typing import Any

from luna_monitoring import (
    add_request_fields,
    add_request_tags,
    current_collector,
    monitored_estimation,
)

WARNINGS = ["liveness balance is low", 'quote " backslash \\ and é']


def record_sdk_work() -> None:
    """What ``POST /sdk_estimate`` records: two image loads, a detection, a descriptor."""
    collector = current_collector()
    for size in (1000, 2000):
        with collector.image_load(format="JPEG", exif=True, autorotated=False) as load:
            load.set(size=size, height=size // 10, width=size // 20)
    with collector.estimation("face_detection", batch_size=2) as estimation:
        estimation.set(detection_count=5)
    collector.record_estimation(
        "face_descriptor", batch_size=2, execution_time=0.01, descriptor_version=59
    )
    collector.add_usage("face_detector", 2)
    collector.add_usage("face_descriptor_extractor", 2)


def record_then_fail() -> None:
    """What ``POST /sdk_fail`` records before its handler raises: one detection."""
    collector = current_collector()
    with collector.estimation("face_detection", batch_size=1):
        pass
    try:
        with collector.estimation("face_landmarks68", batch_size=1):
            raise ValueError("a failed block records nothing")
    except ValueError:
        pass


def report_licences(monitoring: Any) -> None:
    monitoring.report_license("warning", liveness_balance=10, warnings=WARNINGS)
    monitoring.report_license("error", liveness_balance=0, errors=("license expired",))


class Failed(Exception):
    """Raised by ``POST /sdk_fail``: a 500 on either framework, with an ``error_code``."""

    error_code = 7


def tag_request(request: Any) -> None:
    add_request_tags(request, account="a1", api_version=6)
    add_request_tags(request, region="eu")
    add_request_fields(request, load_images_for_processing_time=2, images=3, cached=True, note="x")
    add_request_fields(request, skipped=None, nan_time=float("nan"))


def tag_hostile(request: Any) -> None:
    """Every value add_request_tags/fields cannot take, next to good ones."""
    add_request_tags(request, route="x", status_code=200, none=None, listed=["a"], ok="k")
    add_request_fields(request, request_id="x", execution_time=1.0, blob=b"x")
    add_request_fields(request, load_images_for_processing_time="1", decode_time=True)
    add_request_fields(request, count=2**63, ratio=Decimal("0.25"), parts=Fraction(3, 2))
    add_request_fields(request, load_images_for_processing_time=Decimal("1.5"), n=4)  # replaces
    add_request_fields(request, injected="boom\ninjected,host=evil value=666 1")


def _shared_routes(app: Any) -> None:
    """The routes written once for both frameworks (through :func:`route`)."""

    @route(app, "GET", "/sleep")
    async def sleep(request):
        query = request.args if hasattr(request, "args") else request.query
        await asyncio.sleep(float(query.get("s", "0")))

    @route(app, "GET", "/crash")
    async def crash(request):
        raise RuntimeError("unhandled")

    @route(app, "POST", "/sdk")
    async def sdk(request):
        tag_request(request)
        return {}

    @route(app, "POST", "/hostile")
    async def hostile(request):
        tag_hostile(request)
        return {}

    @route(app, "GET", "/health")
    async def health(request):
        return "ok"

    @route(app, "GET", "/pid")
    async def pid(request):
        return os.getpid()

    @route(app, "POST", "/sdk_estimate")
    @monitored_estimation
    async def sdk_estimate(request):
        record_sdk_work()

    @route(app, "POST", "/sdk_fail")
    @monitored_estimation
    def sdk_fail(request):  # sync: the collector of a sync handler
        record_then_fail()
        raise Failed("failed after recording")

    @route(app, "POST", "/undecorated")
    async def undecorated(request):
        current_collector().add_usage("face_detector")

    @route(app, "POST", "/license")
    async def license_(request):
        report_licences(monitoring_of(request.app))


def sanic_app(name: str, config: dict, plugins: tuple = ()) -> Any:
    from sanic import Sanic
    from sanic.exceptions import SanicException
    from sanic.response import empty, text
    from sanic.response import json as json_response
    from sanic.views import HTTPMethodView

    from luna_monitoring import MonitoringExtension

    class LunaError(SanicException):
        status_code = 400

        def __init__(self, error_code: int) -> None:
            super().__init__("luna error")
            self.error_code = error_code

    app = Sanic(name)
    app.config.MONITORING = config
    app.extend(extensions=[MonitoringExtension(plugins=plugins)])
    _shared_routes(app)

    @app.get("/handlers/<handler_id>")
    async def get_handler(request, handler_id):
        return json_response({"handler_id": handler_id, "seen_id": request.ctx.request_id})

    @app.get("/luna_error")
    async def luna_error(request):
        raise LunaError(11021)

    @app.get("/json_error")
    async def json_error(request):
        code = request.args.get("code", "7")
        return json_response({"error_code": int(code) if code.isdigit() else code}, status=422)

    @app.get("/text_error")
    async def text_error(request):
        return text('{"error_code": 5}', status=400)

    @app.get("/stream")
    async def stream(request):
        response = await request.respond(content_type="text/plain")
        for chunk in range(3):
            await asyncio.sleep(0.05)
            await response.send(f"{chunk}\n")
        await response.eof()

    class Estimate(HTTPMethodView):
        @monitored_estimation
        async def post(self, request, item_id):
            record_sdk_work()
            return empty()

    app.add_route(Estimate.as_view(), "/views/<item_id>")
    return app


def aiohttp_app(config: dict, plugins: tuple = ()) -> Any:
    from aiohttp import web

    from luna_monitoring.aiohttp import get_request_id, setup_monitoring

    class LunaError(web.HTTPBadRequest):
        def __init__(self, error_code: int) -> None:
            super().__init__(text="luna error")
            self.error_code = error_code

    app = web.Application()
    _shared_routes(app)
    routes = web.RouteTableDef()

    @routes.get("/handlers/{handler_id}")
    async def get_handler(request):
        handler_id = request.match_info["handler_id"]
        return web.json_response({"handler_id": handler_id, "seen_id": get_request_id(request)})

    @routes.get("/luna_error")
    async def luna_error(request):
        raise LunaError(11021)

    @routes.get("/json_error")
    async def json_error(request):
        code = request.query.get("code", "7")
        body = {"error_code": int(code) if code.isdigit() else code}
        return web.json_response(body, status=422)

    @routes.get("/text_error")
    async def text_error(request):
        return web.Response(text='{"error_code": 5}', status=400)

    @routes.get("/stream")
    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for chunk in range(3):
            await asyncio.sleep(0.05)
            await response.write(f"{chunk}\n".encode())
        await response.write_eof()
        return response

    @routes.view("/views/{item_id}")
    class Estimate(web.View):
        @monitored_estimation
        async def post(self):
            record_sdk_work()
            return web.Response(status=204)

    app.add_routes(routes)
    setup_monitoring(app, config, plugins=plugins)
    return app


async def gunicorn_app() -> Any:
    """The aiohttp app for ``gunicorn equivalent:gunicorn_app`` (config from the environment)."""
    return aiohttp_app(json.loads(os.environ["APP_MONITORING"]))


def monitoring_of(app: Any) -> Any:
    """The runtime object of an app of either kind (this process's worker)."""
    ctx = getattr(app, "ctx", None)
    if ctx is not None:
        return ctx.monitoring
    from luna_monitoring.aiohttp import get_monitoring

    return get_monitoring(app)


def route(app: Any, method: str, path: str) -> Any:
    """Decorator: route ``method path`` (Sanic's spelling of parameters, ``/items/<i>``) of
    an app of either kind to ``handler(request, **params)``, sync or async, whose result is
    ``None`` (204) or what goes in a JSON body (200).

    >>> @route(app, "POST", "/sdk")
    ... @monitored_estimation
    ... async def sdk(request): ...
    """

    def register(handler: Any) -> Any:
        async def result_of(request: Any, params: dict) -> Any:
            result = handler(request, **params)
            return await result if inspect.isawaitable(result) else result

        if hasattr(app, "ctx"):
            from sanic.response import empty
            from sanic.response import json as json_response

            async def sanic_endpoint(request: Any, **params: Any) -> Any:
                result = await result_of(request, params)
                return empty() if result is None else json_response(result)

            app.add_route(sanic_endpoint, path, methods=[method], name=handler.__name__)
        else:
            from aiohttp import web

            async def aiohttp_endpoint(request: Any) -> Any:
                result = await result_of(request, dict(request.match_info))
                return web.Response(status=204) if result is None else web.json_response(result)

            app.router.add_route(method, re.sub(r"<(\w+)>", r"{\1}", path), aiohttp_endpoint)
        return handler

    return register


if __name__ == "__main__" and sys.argv[1:] == ["aiohttp"]:
    from aiohttp import web

    web.run_app(
        aiohttp_app(json.loads(os.environ["APP_MONITORING"])),
        host="127.0.0.1",
        port=int(os.environ["APP_PORT"]),
        access_log=None,
        print=None,
    )
