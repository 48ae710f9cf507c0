"""The per-worker runtime object, ``app.ctx.monitoring``: record points, flush, stats."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from .clock import UniqueClock
from .licensing import license_tags_and_fields
from .point import Dropped
from .schema import INT64_MAX, INT64_MIN, Kind, Series, get_series
from .settings import Settings
from .writer import Writer

WORKER_STRIDE = 1024
"""Timestamps of server worker ``n`` of an instance with offset ``o`` are ``o + n`` modulo
this: the workers of one instance never collide, nor do instances whose ranges differ."""
INSTANCE_OFFSET_ENV = "_LUNA_MONITORING_INSTANCE_OFFSET"
"""Where an instance's main process leaves its drawn offset for the workers it starts."""
_SERVER_NUMBER = re.compile(r"-Server-(\d+)-\d+$")


def draw_instance_offset() -> int:
    """A new uniformly random offset in ``0..1023`` for this process and its children.

    Called by the main process of an instance before it starts its workers; they find it in
    ``INSTANCE_OFFSET_ENV`` with the pid of the process that drew it.
    """
    offset = secrets.randbelow(WORKER_STRIDE)
    os.environ[INSTANCE_OFFSET_ENV] = f"{offset}:{os.getpid()}"
    return offset


def instance_offset(configured: int | str = "random", *, spawned_worker: bool = False) -> int:
    """This instance's first timestamp residue: ``configured`` if an int; else the one this
    process drew before, or, for a ``spawned_worker``, the one its parent (the instance's
    main process) drew; else a new one.

    Any other inherited offset belongs to another instance (the process that launched this
    one, a test runner, a supervisor) and is not used.

    >>> instance_offset(12)
    12
    """
    if isinstance(configured, int):
        return configured
    offset, _, pid = os.environ.get(INSTANCE_OFFSET_ENV, "").partition(":")
    drawn_by = {str(os.getpid()), str(os.getppid())} if spawned_worker else {str(os.getpid())}
    if offset.isdigit() and pid in drawn_by:
        return int(offset) % WORKER_STRIDE
    return draw_instance_offset()


def worker_clock(worker_name: str | None = None, offset: int = 0) -> UniqueClock:
    """The clock of this worker: residue ``offset`` + its server number from its Sanic name
    (``SANIC_WORKER_NAME``, e.g. ``Sanic-Server-3-0``: server 3, first start); a single
    process counts as server 0.

    >>> worker_clock("Sanic-Server-3-0", offset=1022).now_ns() % WORKER_STRIDE
    1
    """
    name = os.environ.get("SANIC_WORKER_NAME", "") if worker_name is None else worker_name
    match = _SERVER_NUMBER.search(name)
    server = int(match[1]) if match else 0
    return UniqueClock((offset + server) % WORKER_STRIDE, WORKER_STRIDE)


def _built_in(series: str, settings: Settings) -> Series:
    try:
        return get_series(series)
    except ValueError as exc:
        custom = ", ".join(settings.custom_series) or "none declared"
        raise ValueError(f"{exc}; custom_series: {custom}") from None


class _Plan:
    """What :meth:`Monitoring.record` looks up once per series: its spec, the tag keys it
    takes (``None``: any, for request series) and requires, and its field types."""

    __slots__ = ("allowed", "extra_allowed", "field_types", "required", "spec")

    def __init__(self, spec: Series) -> None:
        self.spec = spec
        self.extra_allowed = spec.kind is Kind.REQUEST
        self.allowed = None if self.extra_allowed else frozenset({*spec.tags, "service"})
        self.required = frozenset(spec.tags)
        self.field_types = dict(spec.fields)


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
        """Append a ready point tuple ``(series, time_ns, tags, fields)`` or :class:`Point`
        (request path: no validation, no I/O)."""
        self.emit_all = writer.extend
        """Append a list of ready point tuples, oldest first (as :attr:`emit` one by one)."""
        self._plans: dict[str, _Plan] = {}

    def _plan(self, series: str) -> _Plan:
        """The plan of a series of ``custom_series`` or a built-in one; ``ValueError`` for
        another name (not kept: only valid series are, a bounded set)."""
        spec = self.settings.custom_series.get(series) or _built_in(series, self.settings)
        plan = self._plans[series] = _Plan(spec)
        return plan

    def record(
        self,
        series: str,
        *,
        tags: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        time_ns: int | None = None,
    ) -> None:
        """Validate and buffer one point of any series, built-in or in ``custom_series``.

        ``ValueError`` for an unknown series, a missing or unknown tag or a bad ``time_ns``. A
        field that cannot be written (unknown, of another type, out of range) is left out and
        counted in ``stats["fields_dropped"]``, with a rate-limited warning.
        """
        plan = self._plans.get(series)
        if plan is None:
            plan = self._plan(series)
        # The common case inline: dicts of values of the declared types, which the checks
        # below would copy unchanged. Anything else goes through them.
        checked_tags = None
        if type(tags) is dict:
            for value in tags.values():
                if type(value) is not str:
                    break
            else:
                keys = tags.keys()
                if keys >= plan.required and (plan.allowed is None or keys <= plan.allowed):
                    checked_tags = {**tags, "service": self.service}
        if checked_tags is None:
            checked_tags = plan.spec.check_tags(tags or {}, extra_allowed=plan.extra_allowed)
            checked_tags["service"] = self.service
        checked_fields = None
        if type(fields) is dict:
            types = plan.field_types
            for key, value in fields.items():
                kind = type(value)
                if kind is not types.get(key):
                    break
                if kind is float:
                    if value - value:  # NaN or ±inf: not written
                        break
                elif kind is int and not INT64_MIN <= value <= INT64_MAX:
                    break
            else:
                checked_fields = fields.copy()
        if checked_fields is None:
            checked_fields = plan.spec.check_fields(fields or {}, drop=Dropped)
        if time_ns is None:
            time_ns = self.clock.now_ns()
        elif type(time_ns) is not int or time_ns < 0:
            raise ValueError(f"time_ns must be a non-negative int, got {time_ns!r}")
        # A plain tuple: a third of the cost of making a Point; sinks get Points.
        self.emit((series, time_ns, checked_tags, checked_fields))

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
