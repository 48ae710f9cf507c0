"""The per-worker runtime object, ``app.ctx.monitoring``: record points, flush, stats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .clock import UniqueClock
from .point import Point
from .schema import Kind, get_series
from .settings import Settings
from .writer import Writer


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
        """Validate and buffer one point of any series; ``ValueError`` on misuse."""
        spec = get_series(series)
        checked_tags = spec.check_tags(tags or {}, extra_allowed=spec.kind is Kind.REQUEST)
        checked_tags["service"] = self.service
        checked_fields = spec.check_fields(fields or {})
        if time_ns is None:
            time_ns = self.clock.now_ns()
        elif type(time_ns) is not int or time_ns < 0:
            raise ValueError(f"time_ns must be a non-negative int, got {time_ns!r}")
        self.emit(Point(series, time_ns, checked_tags, checked_fields))

    async def flush(self) -> None:
        """Write everything buffered now (waits for the write, bounded by retries)."""
        await self.writer.flush()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: points_buffered, points_written, points_dropped, write_errors, ..."""
        return self.writer.stats
