"""Background delivery: buffer, flush loop, retry with backoff, bounded shutdown.

Two tasks per worker. The *tick* runs every ``min(flushing_period, 0.05)`` s: it takes the
raw points, feeds the sinks, encodes the points and applies the buffer bound, and wakes the
sender when a full batch waits. The *sender* writes batches of at most ``batch_size`` lines
every ``flushing_period`` (sooner when a batch is full) and handles the server's answer:

* 2xx: written. 400 and other 4xx: the batch is rejected (counted, logged rate-limited);
  InfluxDB 1.x's ``partial write ... dropped=N`` counts only N rejected.
* 413: the batch is split in halves; a single line still too large is rejected.
* no answer, timeout, 401, 403, 404, 408, 429, 5xx: the lines stay buffered and the write is
  retried after an exponential backoff with full jitter, capped by ``max_retry_delay_s``;
  a ``Retry-After`` from the server is waited at least. Refused credentials and
  configuration errors the server names (missing database, bucket or retention policy, no
  write endpoint at the URL) are logged once as an error with the fix and retried only
  every ``max_retry_delay_s``: waiting longer does not fix them, a person does.

A failing database is logged once when the outage starts (again only if the kind of failure
changes) and once when it ends. A point is never sent again after its write succeeded; a
retry after a failure whose answer was lost may send it twice, with the same measurement,
tags, fields and timestamp, which InfluxDB stores as one point.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..storages import Storage, WriteError, make_encoder, misconfiguration
from .buffer import Buffer
from .logs import worker_logger
from .point import Point, PointTuple, as_points
from .settings import Settings
from .throttle import LogThrottle

logger = worker_logger(__name__)

Sink = Callable[[list[Point]], Any]
"""Receives every drained list of points in the background (must not keep or modify it)."""

TICK_S = 0.05
TICK_POINTS = 1000
BACKOFF_BASE_S = 0.5
_RETRIED = frozenset({401, 403, 404, 408, 429})
_NEEDS_A_PERSON = frozenset({"credentials", "configuration"})
_PARTIAL_WRITE = re.compile(r"partial write.*dropped=(\d+)", re.DOTALL)


def is_retried(status: int | None) -> bool:
    """Whether a write that failed with ``status`` (``None``: no answer) is retried."""
    return status is None or status in _RETRIED or status >= 500


def backoff_s(failures: int, cap_s: float) -> float:
    """Full-jitter exponential backoff after ``failures`` consecutive failed writes."""
    return random.uniform(0.0, min(cap_s, BACKOFF_BASE_S * 2.0 ** min(failures - 1, 30)))


def _failure_kind(error: WriteError, settings: Settings) -> str:
    if error.status is None:
        return "no answer"
    if error.status in (401, 403):
        return "credentials"
    if misconfiguration(error, settings):
        return "configuration"
    if error.status >= 500:
        return "server error"
    return f"HTTP {error.status}"


class Writer:
    """Buffers the points of one worker and writes them to ``storage`` in the background.

    >>> writer = Writer(settings, make_storage(settings))
    >>> await writer.start()          # before_server_start
    >>> writer.append(point)          # request path
    >>> await writer.stop()           # after_server_stop
    """

    def __init__(self, settings: Settings, storage: Storage, sinks: Sequence[Sink] = ()) -> None:
        self.settings = settings
        self.storage = storage
        self.sinks = tuple(sinks)
        self._buffer = Buffer(settings.max_buffer_points, make_encoder(settings))
        self.append: Callable[[PointTuple], None] = self._buffer.append
        """Buffer one point tuple (or :class:`Point`): the request path (a bound
        ``deque.append``; no I/O, never blocks)."""
        self._batch_size = settings.batch_size
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping: asyncio.Future | None = None
        self._last_pass = 0.0
        self._retry_at: float | None = None
        self._failures = 0
        self._outage_since: float | None = None
        self._outage_kinds: set[str] = set()
        self._outage_retries = 0
        self._write_errors = 0
        self._retries = 0
        self._sink_errors = 0
        self._logged_dropped = 0
        self._logged_left_out = 0
        self._left_out_warning = LogThrottle()
        self._drop_warning = LogThrottle()
        self._reject_warning = LogThrottle()
        self._sink_warning = LogThrottle()
        self._bug_warning = LogThrottle()

    def __repr__(self) -> str:
        return f"Writer({self.settings.target}, buffered={len(self._buffer)})"

    @property
    def stats(self) -> dict[str, int]:
        """Delivery counters of this worker.

        Every point appended is in exactly one of ``points_buffered``, ``points_written``,
        ``points_dropped`` (buffer full), ``points_rejected`` (refused by the server as bad
        data or too large), ``points_invalid`` or ``points_without_fields`` (not encodable).
        ``fields_dropped`` and ``tags_dropped`` count fields and tags left out of written
        points because they cannot be written (see :mod:`luna_monitoring.core.point`).
        """
        buffer = self._buffer
        return {
            "points_buffered": len(buffer),
            "points_written": buffer.written,
            "points_dropped": buffer.dropped,
            "points_rejected": buffer.rejected,
            "points_invalid": buffer.encoder.points_invalid,
            "points_without_fields": buffer.encoder.points_without_fields,
            "fields_dropped": buffer.encoder.fields_dropped,
            "tags_dropped": buffer.encoder.tags_dropped,
            "write_errors": self._write_errors,
            "retries": self._retries,
            "sink_errors": self._sink_errors,
        }

    async def start(self) -> None:
        """Start the tick and the sender on the running event loop."""
        loop = asyncio.get_running_loop()
        self._last_pass = loop.time()
        settings = self.settings
        logger.info(
            "monitoring: points go to %s every flushing_period=%g s in batches of at most "
            "batch_size=%d, holding at most max_buffer_points=%d, gzip %s",
            settings.target,
            settings.flushing_period,
            settings.batch_size,
            settings.max_buffer_points,
            "on" if settings.compress else "off",
        )
        self._stopping: asyncio.Future | None = None
        self._tasks = [
            loop.create_task(self._tick_loop(), name="luna_monitoring.tick"),
            loop.create_task(self._send_loop(), name="luna_monitoring.send"),
        ]

    async def flush(self) -> bool:
        """Write everything buffered now, at once (skipping a backoff wait).

        True when every point is written or rejected; False when a write failed and points
        stay buffered for the background retries.
        """
        async with self._lock:
            await self._drain_all()
            return await self._deliver(len(self._buffer))

    async def stop(self) -> None:
        """Stop the tasks, write what is left within ``shutdown_timeout_s``, close the storage.

        Only the first call does it; a second one waits for it. A Sanic worker that gets
        Ctrl-C's SIGINT and then the main process's stop request runs its stop listeners
        twice, which logged the shutdown summary twice (as if twice the points were lost).
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_s
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._failures = 0  # the final flush backs off from the shortest delay
        await self._drain_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline), self._lock:
                await self._final_flush(deadline)
        undelivered = len(self._buffer)
        if undelivered:
            dropped = self._buffer.dropped
            logger.warning(
                "monitoring: %d points could not be delivered to %s within shutdown_timeout_s=%g%s",
                undelivered,
                self.settings.target,
                self.settings.shutdown_timeout_s,
                f"; {dropped} more were dropped earlier (buffer full)" if dropped else "",
            )
        with contextlib.suppress(Exception):
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await self.storage.close()

    async def _final_flush(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not await self._deliver(len(self._buffer)):
            await asyncio.sleep(min(self._retry_at or 0.0, deadline) - loop.time())

    # -- tick: raw points -> sinks -> lines ------------------------------------------

    async def _tick_loop(self) -> None:
        period = min(self.settings.flushing_period, TICK_S)
        while True:
            await asyncio.sleep(period)
            try:
                await self._drain_all()
            except Exception:
                if self._bug_warning.ready(asyncio.get_running_loop().time()):
                    logger.exception("monitoring: taking points from the buffer failed")
            if self._buffer.lines >= self._batch_size:
                self._wake.set()

    async def _drain_all(self) -> None:
        """Drain the raw points in slices, letting requests run between them."""
        while self._drain():
            await asyncio.sleep(0)

    def _drain(self) -> bool:
        """Take a slice of raw points to the sinks and encode them; True if some remain."""
        buffer = self._buffer
        points = buffer.take(TICK_POINTS)
        if not points:
            return False
        named = as_points(points) if self.sinks else points
        for sink in self.sinks:
            try:
                sink(named)
            except Exception as exc:
                self._sink_errors += 1
                self._sink_failed(sink, exc)
        buffer.add(points)
        self._warn_left_out()
        dropped = buffer.dropped - self._logged_dropped
        if dropped:
            self._logged_dropped = buffer.dropped
            if self._drop_warning.ready(asyncio.get_running_loop().time(), dropped):
                logger.warning(
                    "monitoring: buffer full (max_buffer_points=%d, %s unreachable or too "
                    "slow): dropped the %d oldest points (%d in all)",
                    buffer.max_points,
                    self.settings.target,
                    self._drop_warning.take(),
                    buffer.dropped,
                )
        return buffer.raw > 0

    def _warn_left_out(self) -> None:
        """A rate-limited warning for fields and tags the encoder left out."""
        encoder = self._buffer.encoder
        total = encoder.fields_dropped + encoder.tags_dropped
        if total == self._logged_left_out:
            return
        count, self._logged_left_out = total - self._logged_left_out, total
        if self._left_out_warning.ready(asyncio.get_running_loop().time(), count):
            logger.warning(
                "monitoring: left out %d field(s) or tag(s) that cannot be written (%d in all; "
                "the rest of each point is written), the last: %s",
                self._left_out_warning.take(),
                total,
                encoder.last_dropped,
            )

    def _sink_failed(self, sink: Sink, exc: Exception) -> None:
        if self._sink_warning.ready(asyncio.get_running_loop().time()):
            logger.warning(
                "monitoring: sink %r failed %d time(s) (%s: %s); delivery goes on",
                sink,
                self._sink_warning.take(),
                type(exc).__name__,
                exc,
            )

    # -- sender: lines -> storage ----------------------------------------------------

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.settings.flushing_period
        while True:
            if self._retry_at is not None:
                await asyncio.sleep(self._retry_at - loop.time())
            elif self._buffer.lines < self._batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._last_pass + period):
                        await self._wake.wait()
            # Woken by a full batch before the period: full batches only.
            due = self._retry_at is not None or loop.time() >= self._last_pass + period
            async with self._lock:
                await self._drain_all()
                if due:
                    self._last_pass = loop.time()
                await self._deliver(self._buffer.lines if due else 0)

    async def _deliver(self, quota: int) -> bool:
        """Write ``quota`` lines, then full batches while there are; False after a failure."""
        buffer = self._buffer
        limit = self._batch_size
        while buffer.lines and (quota > 0 or buffer.lines >= self._batch_size):
            body, count = buffer.begin(limit)
            if self._failures:
                self._retries += 1
            try:
                await self._write(body)
            except WriteError as error:
                self._write_errors += 1
                if is_retried(error.status):
                    buffer.keep()
                    self._failed(error)
                    return False
                if error.status == 413 and count > 1:
                    buffer.keep()
                    limit = (count + 1) // 2
                    continue
                self._rejected(error, count)
            except BaseException:
                buffer.keep()
                raise
            else:
                buffer.settle(count)
                self._succeeded()
            quota -= count
        return True

    async def _write(self, body: bytes) -> None:
        try:
            await self.storage.write(body)
        except WriteError:
            raise
        except Exception as exc:
            # Only the type: the text of an unexpected error may hold a secret.
            raise WriteError(None, f"unexpected {type(exc).__name__}") from None

    def _rejected(self, error: WriteError, count: int) -> None:
        rejected = error.rejected
        if rejected is None:
            match = _PARTIAL_WRITE.search(error.message)
            rejected = int(match[1]) if match else count
        rejected = min(count, rejected)
        self._buffer.settle(count - rejected, rejected)
        if self._reject_warning.ready(asyncio.get_running_loop().time(), rejected):
            logger.warning(
                "monitoring: %s rejected %d points as bad data (%d in all): HTTP %s: %s",
                self.settings.target,
                self._reject_warning.take(),
                self._buffer.rejected,
                error.status,
                error.message,
            )

    def _failed(self, error: WriteError) -> None:
        now = asyncio.get_running_loop().time()
        self._failures += 1
        kind = _failure_kind(error, self.settings)
        if kind in _NEEDS_A_PERSON:
            delay = self.settings.max_retry_delay_s
        else:
            delay = backoff_s(self._failures, self.settings.max_retry_delay_s)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        self._retry_at = now + delay
        if self._outage_since is None:
            self._outage_since = now
            self._outage_retries = self._retries
        elif kind in self._outage_kinds:
            return
        self._outage_kinds.add(kind)
        if kind == "credentials":
            logger.error(
                "monitoring: %s refused the credentials (%s): check token, or username and "
                "password; points stay buffered and writes are retried",
                self.settings.target,
                error,
            )
        elif kind == "configuration":
            logger.error(
                "monitoring: %s: %s (%s); points stay buffered and writes are retried every "
                "max_retry_delay_s=%g s",
                self.settings.target,
                misconfiguration(error, self.settings),
                error,
                self.settings.max_retry_delay_s,
            )
        else:
            logger.warning(
                "monitoring: writing to %s failed (%s); points stay buffered (%d now) and "
                "writes are retried with backoff",
                self.settings.target,
                error,
                len(self._buffer),
            )

    def _succeeded(self) -> None:
        if self._outage_since is not None:
            elapsed = asyncio.get_running_loop().time() - self._outage_since
            logger.warning(
                "monitoring: delivered to %s again after %.1f s, %d retries",
                self.settings.target,
                elapsed,
                self._retries - self._outage_retries,
            )
        self._failures = 0
        self._retry_at = self._outage_since = None
        self._outage_kinds.clear()
