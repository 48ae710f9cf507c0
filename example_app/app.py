"""The example service on Sanic: a LUNA Remote SDK look-alike monitored by ``luna_monitoring``.

Routes: ``POST /sdk`` and ``POST /iso`` (images as the raw body or multipart files),
``GET /version`` and ``GET /monitoring/stats`` (this worker's delivery counters).
``MONITORING`` comes from the ``LUNA_MONITORING_*`` variables unless given. The work is in
:mod:`example_app.service`, shared with the aiohttp app (:mod:`example_app.aiohttp_app`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sanic import HTTPResponse, Request, Sanic, json
from sanic.exceptions import SanicException
from sanic.log import error_logger, logger

from luna_monitoring import MonitoringExtension, monitored_estimation

from .errors import INTERNAL, LunaError, error_body, kind_of_status
from .service import (
    ENV_PREFIX,
    STATS_ROUTES,
    Options,
    Service,
    monitoring_config,
    stats_body,
    stats_line,
    version_body,
)

__all__ = ["ENV_PREFIX", "STATS_ROUTES", "Options", "create_app"]


def create_app(
    config: Mapping[str, Any] | None = None,
    options: Options | None = None,
    name: str = "luna_remote_sdk_example",
) -> Sanic:
    """The service; ``config`` is ``MONITORING`` (default: from ``LUNA_MONITORING_*``)."""
    options = options or Options.from_env()
    app = Sanic(name)
    app.config.MONITORING = monitoring_config(config)
    app.ctx.service = Service(options)
    app.error_handler.add(Exception, _error)
    # Registered before the extension: stop listeners run in reverse, so this one runs
    # after the extension's final flush and logs the final counters.
    app.after_server_stop(_log_stats)
    app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
    app.add_route(sdk, "/sdk", methods=["POST"])
    app.add_route(iso, "/iso", methods=["POST"])
    app.add_route(version_info, "/version")
    app.add_route(stats, "/monitoring/stats")
    return app


def _sent(request: Request) -> Any:
    async def sent() -> list[tuple[str, bytes]]:
        if request.files:
            files = request.files.items()
            return [(f.name or field, f.body) for field, parts in files for f in parts]
        return [("body", request.body)]

    return sent


def _monitoring(request: Request) -> Any:
    return getattr(request.app.ctx, "monitoring", None)


@monitored_estimation
async def sdk(request: Request) -> HTTPResponse:
    """Detect and estimate: ``?estimate=face_detection,livenessv1,...&aggregate=1``."""
    service: Service = request.app.ctx.service
    return json(await service.sdk(request, request.args, _sent(request), _monitoring(request)))


@monitored_estimation
async def iso(request: Request) -> HTTPResponse:
    """Check portraits against ISO/IEC 19794-5."""
    service: Service = request.app.ctx.service
    return json(await service.iso(request, request.args, _sent(request), _monitoring(request)))


async def version_info(request: Request) -> HTTPResponse:
    """Versions of the service and of luna-monitoring."""
    return json(version_body())


async def stats(request: Request) -> HTTPResponse:
    """This worker's delivery counters (``app.ctx.monitoring.stats``)."""
    return json(stats_body(_monitoring(request)))


async def _error(request: Request, exc: Exception) -> HTTPResponse:
    """Every error as a LUNA-style JSON body."""
    if isinstance(exc, LunaError):
        return json(error_body(exc.kind, exc.detail), status=exc.status_code)
    if isinstance(exc, SanicException) and exc.status_code < 500:
        kind = kind_of_status(exc.status_code)
        return json(error_body(kind, str(exc)), status=kind.status)
    error_logger.exception("unhandled error in %s %s", request.method, request.path)
    return json(error_body(INTERNAL, "unexpected error, see the service log"), status=500)


async def _log_stats(app: Sanic) -> None:
    """Log this worker's counters once (Sanic may run the stop listeners twice)."""
    monitoring = getattr(app.ctx, "monitoring", None)
    if monitoring is not None and not getattr(app.ctx, "stats_logged", False):
        app.ctx.stats_logged = True
        logger.info("%s", stats_line(monitoring))
