"""The per-worker runtime object, ``app.ctx.monitoring``: record points, flush, stats."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .clock import UniqueClock
from .licensing import license_tags_and_fields
from .point import Dropped, Point
from .schema import Kind, get_series
from .settings import Settings
from .writer import Writer

WORKER_STRIDE = 1024
"""Timestamps of server worker ``n`` are ``n`` modulo this: up to 1024 workers never collide."""
_SERVER_NUMBER = re.compile(r"-Server-(\d+)-\d+$")


def worker_clock(worker_name: str | None = None) -> UniqueClock:
    """The clock of this worker, from its Sanic name (``SANIC_WORKER_NAME``, e.g.
    ``Sanic-Server-3-0``: server 3, first start); a single process counts as server 0.

    >>> worker_clock("Sanic-Server-3-0").now_ns() % WORKER_STRIDE
    3
    """
    name = os.environ.get("SANIC_WORKER_NAME", "") if worker_name is None else worker_name
    match = _SERVER_NUMBER.search(name)
    server = int(match[1]) if match else 0
    return UniqueClock(server % WORKER_STRIDE, WORKER_STRIDE)


class Monitoring:
    """Monitoring of one worker: the clock, the writer, and what handlers may call.

    >>> app.ctx.monitoring.record("licensing", tags={"license_status": "warning"},
    ...                           fields={"liveness_balance": 10})
    """

    def __init__(self, settings: Settings, writer: Writer, clock: UniqueClock) -> None:
        self.settings = settings
        self.writer = writer
        self.clock = clock
        self.service = settings.service
        self.emit = writer.append
        """Append a ready :class:`Point` (request path: no validation, no I/O)."""

    def record(
        self,
        series: str,
        *,
        tags: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        time_ns: int | None = None,
    ) -> None:
        """Validate and buffer one point of any series.

        ``ValueError`` for an unknown series, a missing or unknown tag or a bad ``time_ns``. A
        field that cannot be written (unknown, of another type, out of range) is left out and
        counted in ``stats["fields_dropped"]``, with a rate-limited warning.
        """
        spec = get_series(series)
        checked_tags = spec.check_tags(tags or {}, extra_allowed=spec.kind is Kind.REQUEST)
        checked_tags["service"] = self.service
        checked_fields = spec.check_fields(fields or {}, drop=Dropped)
        if time_ns is None:
            time_ns = self.clock.now_ns()
        elif type(time_ns) is not int or time_ns < 0:
            raise ValueError(f"time_ns must be a non-negative int, got {time_ns!r}")
        self.emit(Point(series, time_ns, checked_tags, checked_fields))

    def report_license(
        self,
        status: str,
        *,
        liveness_balance: int,
        warnings: Iterable[str] = (),
        errors: Iterable[str] = (),
    ) -> None:
        """Buffer a ``licensing`` point (status ``"warning"`` or ``"error"``); ``ValueError``
        for any argument of another type.

        >>> app.ctx.monitoring.report_license("warning", liveness_balance=10,
        ...                                   warnings=["liveness balance is low"])
        """
        tags, fields = license_tags_and_fields(
            status, liveness_balance=liveness_balance, warnings=warnings, errors=errors
        )
        get_series("licensing").check_fields(fields)  # its own arguments: ValueError at the call
        self.record("licensing", tags=tags, fields=fields)

    async def flush(self) -> bool:
        """Write everything buffered now; False when a write failed (the points stay buffered)."""
        return await self.writer.flush()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: points_buffered, points_written, points_dropped, write_errors, ...

        plus those of sinks that keep ``stats`` (plugins: ``plugin_errors``, ...).
        """
        stats = self.writer.stats
        for sink in self.writer.sinks:
            stats.update(getattr(sink, "stats", {}))
        return stats
