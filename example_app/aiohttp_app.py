"""The example service on aiohttp: the same routes, work and points as the Sanic app.

``create_app(config=None, options=None)`` builds the ``aiohttp.web.Application``; the work
is :mod:`example_app.service`'s, shared with the Sanic app. Served by gunicorn with
``LUNA_EXAMPLE_WORKERS`` workers, as ``make demo FRAMEWORK=aiohttp`` does::

    gunicorn -c python:example_app.gunicorn_conf 'example_app.aiohttp_app:create_app()'

or alone by ``python -m example_app.aiohttp_app`` (``web.run_app``, one process; host and
port from ``LUNA_EXAMPLE_*``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from luna_monitoring import monitored_estimation
from luna_monitoring.aiohttp import get_monitoring, setup_monitoring

from .errors import INTERNAL, LunaError, error_body, kind_of_status
from .service import Options, Service, monitoring_config, stats_body, stats_line, version_body

SERVICE = web.AppKey("example_service", Service)
logger = logging.getLogger("example_app")


def create_app(
    config: Mapping[str, Any] | None = None, options: Options | None = None
) -> web.Application:
    """The service; ``config`` is ``MONITORING`` (default: from ``LUNA_MONITORING_*``)."""
    options = options or Options.from_env()
    app = web.Application(middlewares=[_errors], client_max_size=options.max_image_size * 4)
    app[SERVICE] = Service(options)
    # Before the monitoring's: cleanup contexts end in reverse, so this one logs the
    # counters after the final flush.
    app.cleanup_ctx.append(_log_stats)
    setup_monitoring(app, monitoring_config(config))
    app.router.add_post("/sdk", sdk)
    app.router.add_post("/iso", iso)
    app.router.add_get("/version", version_info)
    app.router.add_get("/monitoring/stats", stats)
    return app


def _sent(request: web.Request) -> Any:
    async def sent() -> list[tuple[str, bytes]]:
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            return [
                (part.filename or field, part.file.read())
                for field, part in form.items()
                if isinstance(part, web.FileField)
            ]
        return [("body", await request.read())]

    return sent


@monitored_estimation
async def sdk(request: web.Request) -> web.Response:
    """Detect and estimate: ``?estimate=face_detection,livenessv1,...&aggregate=1``."""
    answer = await request.app[SERVICE].sdk(
        request, request.query, _sent(request), get_monitoring(request)
    )
    return web.json_response(answer)


@monitored_estimation
async def iso(request: web.Request) -> web.Response:
    """Check portraits against ISO/IEC 19794-5."""
    answer = await request.app[SERVICE].iso(
        request, request.query, _sent(request), get_monitoring(request)
    )
    return web.json_response(answer)


async def version_info(request: web.Request) -> web.Response:
    """Versions of the service and of luna-monitoring."""
    return web.json_response(version_body())


async def stats(request: web.Request) -> web.Response:
    """This worker's delivery counters (``get_monitoring(request).stats``)."""
    return web.json_response(stats_body(get_monitoring(request)))


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as a LUNA-style JSON body, whose ``error_code`` the monitoring reads."""
    try:
        return await handler(request)
    except LunaError as exc:
        return web.json_response(error_body(exc.kind, exc.detail), status=exc.status_code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = kind_of_status(exc.status)
        return web.json_response(error_body(kind, exc.reason), status=kind.status)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        body = error_body(INTERNAL, "unexpected error, see the service log")
        return web.json_response(body, status=500)


async def _log_stats(app: web.Application) -> AsyncIterator[None]:
    yield
    monitoring = get_monitoring(app)
    if monitoring is not None:
        logger.info("%s", stats_line(monitoring))


def main() -> None:
    """Serve one process until interrupted."""
    logging.basicConfig(level=logging.INFO)
    options = Options.from_env()
    web.run_app(create_app(options=options), host=options.host, port=options.port)


if __name__ == "__main__":
    main()
