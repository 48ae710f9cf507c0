"""The example service's work, whatever framework serves it: options, query parameters and
the answers of its routes. ``example_app.app`` (Sanic) and ``example_app.aiohttp_app``
(aiohttp) only route requests here and turn answers and :class:`LunaError` into responses.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from importlib.metadata import version
from time import perf_counter
from typing import Any

from luna_monitoring import add_request_fields, current_collector
from luna_monitoring.core.envconfig import config_from_env

from .errors import BAD_QUERY_PARAM, LunaError
from .estimators import DEEPFAKE_MODES, ISO_CHECKS, SDK_ESTIMATIONS, Job, run
from .images import LoadedImage, checked_images, load_images
from .licensing import LivenessLicense

ENV_PREFIX = "LUNA_EXAMPLE_"
STATS_ROUTES = r"^GET:/monitoring/"

Query = Mapping[str, str]
"""The query parameters of a request (Sanic's ``request.args``, aiohttp's ``request.query``)."""
SentImages = Callable[[], Awaitable[list[tuple[str, bytes]]]]
"""Reads ``(filename, bytes)`` of every image of the request: each multipart file, else the
raw body."""


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


def monitoring_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``MONITORING``: ``config``, else from the ``LUNA_MONITORING_*`` variables; the stats
    route left unmonitored unless ``excluded_routes`` is given."""
    monitoring = dict(config_from_env() if config is None else config)
    monitoring.setdefault("excluded_routes", [STATS_ROUTES])
    return monitoring


class Service:
    """One app's state: its options and liveness licence (per worker)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.license = LivenessLicense(options.liveness_balance, options.liveness_warning_threshold)

    async def sdk(self, request: Any, query: Query, sent: SentImages, monitoring: Any) -> dict:
        """Detect and estimate: ``?estimate=face_detection,livenessv1,...&aggregate=1``."""
        mode = query.get("deepfake_mode", DEEPFAKE_MODES[0])
        if mode not in DEEPFAKE_MODES:
            raise LunaError(BAD_QUERY_PARAM, f"deepfake_mode must be one of {DEEPFAKE_MODES}")
        liveness = self.license.grant()
        job = Job(_estimations(query), liveness, mode, _flag(query, "aggregate", False))
        return await self._estimate_images(request, query, sent, job, monitoring)

    async def iso(self, request: Any, query: Query, sent: SentImages, monitoring: Any) -> dict:
        """Check portraits against ISO/IEC 19794-5."""
        job = Job(ISO_CHECKS, self.license.grant())
        answer = await self._estimate_images(request, query, sent, job, monitoring)
        collector = current_collector()
        collector.add_usage("iso_estimator", len(answer["images"]))
        faces = sum(len(image["faces"]) for image in answer["images"])
        collector.add_usage("face_quality_estimator", faces)
        return answer

    async def _estimate_images(
        self, request: Any, query: Query, sent: SentImages, job: Job, monitoring: Any
    ) -> dict[str, Any]:
        images = await self._load(request, query, sent)
        answer = await asyncio.to_thread(run, job, images)
        if "livenessv1" in job.estimate and monitoring is not None:
            self.license.report(monitoring, refused=job.liveness.refused)
        return answer

    async def _load(self, request: Any, query: Query, sent: SentImages) -> list[LoadedImage]:
        """Decode the request's images, timed into ``load_images_for_processing_time``."""
        use_exif = _flag(query, "use_exif_info", True)
        images = checked_images(await sent(), self.options.max_image_size)
        start = perf_counter()
        loaded = await asyncio.to_thread(load_images, images, use_exif=use_exif)
        add_request_fields(request, load_images_for_processing_time=perf_counter() - start)
        return loaded


def version_body() -> dict[str, Any]:
    """Versions of the service and of luna-monitoring."""
    return {"Version": {"api": 1, "luna_monitoring": version("luna-monitoring")}}


def stats_body(monitoring: Any) -> dict[str, Any]:
    """This worker's delivery counters (the runtime object's ``stats``)."""
    return {"pid": os.getpid(), "stats": monitoring.stats if monitoring else None}


def stats_line(monitoring: Any) -> str:
    """The line each worker logs with its final counters (the demo reads it)."""
    return "monitoring stats: " + json.dumps(
        {"pid": os.getpid(), **monitoring.stats}, sort_keys=True
    )


def _flag(query: Query, name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise LunaError(BAD_QUERY_PARAM, f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def _estimations(query: Query) -> frozenset[str]:
    names = frozenset(filter(None, query.get("estimate", "face_detection").split(",")))
    unknown = ", ".join(sorted(names - SDK_ESTIMATIONS))
    if unknown:
        valid = ", ".join(sorted(SDK_ESTIMATIONS))
        raise LunaError(BAD_QUERY_PARAM, f"unknown estimation(s) {unknown}; valid: {valid}")
    return names
