"""The example service: a LUNA Remote SDK look-alike monitored by ``luna_monitoring``.

Routes: ``POST /sdk`` and ``POST /iso`` (images as the raw body or multipart files),
``GET /version`` and ``GET /monitoring/stats`` (this worker's delivery counters).
``MONITORING`` comes from the ``LUNA_MONITORING_*`` variables unless given.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib.metadata import version
from time import perf_counter
from typing import Any

from sanic import HTTPResponse, Request, Sanic, json
from sanic.log import logger

from luna_monitoring import (
    MonitoringExtension,
    add_request_fields,
    current_collector,
    monitored_estimation,
)
from luna_monitoring.core.envconfig import config_from_env

from . import errors
from .errors import BAD_QUERY_PARAM, LunaError
from .estimators import DEEPFAKE_MODES, ISO_CHECKS, SDK_ESTIMATIONS, Job, run
from .images import LoadedImage, load_images, request_images
from .licensing import LivenessLicense

ENV_PREFIX = "LUNA_EXAMPLE_"
STATS_ROUTES = r"^GET:/monitoring/"


@dataclass(frozen=True, slots=True)
class Options:
    """The example's own settings, each from ``LUNA_EXAMPLE_<NAME>`` when set."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_image_size: int = 10 * 1024 * 1024
    liveness_balance: int = 1000
    liveness_warning_threshold: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Options:
        """Options from ``LUNA_EXAMPLE_*`` variables; ``ValueError`` names a bad one."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for option in fields(cls):
            name = ENV_PREFIX + option.name.upper()
            if name in environ:
                try:
                    values[option.name] = type(option.default)(environ[name])
                except ValueError:
                    raise ValueError(
                        f"{name}: expected an integer, got {environ[name]!r}"
                    ) from None
        return cls(**values)


def create_app(
    config: Mapping[str, Any] | None = None,
    options: Options | None = None,
    name: str = "luna_remote_sdk_example",
) -> Sanic:
    """The service; ``config`` is ``MONITORING`` (default: from ``LUNA_MONITORING_*``)."""
    options = options or Options.from_env()
    app = Sanic(name)
    monitoring = dict(config_from_env() if config is None else config)
    monitoring.setdefault("excluded_routes", [STATS_ROUTES])
    app.config.MONITORING = monitoring
    app.ctx.options = options
    app.ctx.license = LivenessLicense(options.liveness_balance, options.liveness_warning_threshold)
    errors.install(app)
    # Registered before the extension: stop listeners run in reverse, so this one runs
    # after the extension's final flush and logs the final counters.
    app.after_server_stop(_log_stats)
    app.extend(extensions=[MonitoringExtension], built_in_extensions=False)
    app.add_route(sdk, "/sdk", methods=["POST"])
    app.add_route(iso, "/iso", methods=["POST"])
    app.add_route(version_info, "/version")
    app.add_route(stats, "/monitoring/stats")
    return app


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise LunaError(BAD_QUERY_PARAM, f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def _estimate(request: Request) -> frozenset[str]:
    names = frozenset(filter(None, request.args.get("estimate", "face_detection").split(",")))
    unknown = ", ".join(sorted(names - SDK_ESTIMATIONS))
    if unknown:
        valid = ", ".join(sorted(SDK_ESTIMATIONS))
        raise LunaError(BAD_QUERY_PARAM, f"unknown estimation(s) {unknown}; valid: {valid}")
    return names


async def _load(request: Request) -> list[LoadedImage]:
    """Decode the request's images, timed into ``load_images_for_processing_time``."""
    use_exif = _flag(request, "use_exif_info", True)
    sent = request_images(request, request.app.ctx.options.max_image_size)
    start = perf_counter()
    images = await asyncio.to_thread(load_images, sent, use_exif=use_exif)
    add_request_fields(request, load_images_for_processing_time=perf_counter() - start)
    return images


async def _estimate_images(request: Request, job: Job) -> dict[str, Any]:
    images = await _load(request)
    answer = await asyncio.to_thread(run, job, images)
    monitoring = getattr(request.app.ctx, "monitoring", None)
    if "livenessv1" in job.estimate and monitoring is not None:
        request.app.ctx.license.report(monitoring, refused=job.liveness.refused)
    return answer


@monitored_estimation
async def sdk(request: Request) -> HTTPResponse:
    """Detect and estimate: ``?estimate=face_detection,livenessv1,...&aggregate=1``."""
    mode = request.args.get("deepfake_mode", DEEPFAKE_MODES[0])
    if mode not in DEEPFAKE_MODES:
        raise LunaError(BAD_QUERY_PARAM, f"deepfake_mode must be one of {DEEPFAKE_MODES}")
    liveness = request.app.ctx.license.grant()
    job = Job(_estimate(request), liveness, mode, _flag(request, "aggregate", False))
    return json(await _estimate_images(request, job))


@monitored_estimation
async def iso(request: Request) -> HTTPResponse:
    """Check portraits against ISO/IEC 19794-5."""
    answer = await _estimate_images(request, Job(ISO_CHECKS, request.app.ctx.license.grant()))
    collector = current_collector()
    collector.add_usage("iso_estimator", len(answer["images"]))
    collector.add_usage("face_quality_estimator", sum(len(i["faces"]) for i in answer["images"]))
    return json(answer)


async def version_info(request: Request) -> HTTPResponse:
    """Versions of the service and of luna-monitoring."""
    return json({"Version": {"api": 1, "luna_monitoring": version("luna-monitoring")}})


async def stats(request: Request) -> HTTPResponse:
    """This worker's delivery counters (``app.ctx.monitoring.stats``)."""
    monitoring = getattr(request.app.ctx, "monitoring", None)
    return json({"pid": os.getpid(), "stats": monitoring.stats if monitoring else None})


async def _log_stats(app: Sanic) -> None:
    """Log this worker's counters once (Sanic may run the stop listeners twice)."""
    monitoring = getattr(app.ctx, "monitoring", None)
    if monitoring is not None and not getattr(app.ctx, "stats_logged", False):
        app.ctx.stats_logged = True
        record = {"pid": os.getpid(), **monitoring.stats}
        logger.info("monitoring stats: %s", jsonlib.dumps(record, sort_keys=True))
