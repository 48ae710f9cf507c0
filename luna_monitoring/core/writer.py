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

One write is in flight at a time, the batches in order. While it is, a full batch waiting
behind it is compressed in a worker thread (with ``gzip`` on, for the InfluxDB storages): the
next write starts without waiting for its compression. That body is used only if it is
byte for byte the body of the lines the next write takes, else compressed anew.

With a disk spool (``spool_dir``, see :mod:`.spool`), the tick moves the waiting lines to
the spool while writes fail, else those beyond half of ``max_buffer_points`` (and whatever
the bound sheds); :meth:`Writer.stop` spools what could not be delivered at once; the sender
writes the spool back (:mod:`.replay`) whenever the live lines are delivered, at most
``spool_replay_points_per_s``. A spool that cannot be written (disk full, read-only) is
retried after ``SPOOL_RETRY_S``; meanwhile the buffer drops its oldest points as without one.

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

from ..storages import Gzipped, Storage, WriteError, gzip_body, make_encoder, misconfiguration
from .buffer import Buffer
from .logs import worker_logger
from .point import Point, PointTuple, as_points, join_lines
from .replay import Replay
from .settings import Settings
from .spool import Spool, server_number
from .throttle import LogThrottle

logger = worker_logger(__name__)

Sink = Callable[[list[Point]], Any]
"""Receives every drained list of points in the background (must not keep or modify it)."""

TICK_S = 0.05
"""Longest time between two ticks (``flushing_period`` if that is shorter)."""
MIN_TICK_S = 0.004
TICK_TARGET_POINTS = 300
"""A busy worker ticks so that each tick takes about this many points (at most every
``MIN_TICK_S``): points encoded a few ms after they were made are still in the CPU's caches."""
TICK_POINTS = 1000
BACKOFF_BASE_S = 0.5
SPOOL_RETRY_S = 5.0
ADOPT_EVERY_S = 30.0
_RETRIED = frozenset({401, 403, 404, 408, 429})
_NEEDS_A_PERSON = frozenset({"credentials", "configuration"})
_PARTIAL_WRITE = re.compile(r"partial write.*dropped=(\d+)", re.DOTALL)


def is_retried(status: int | None) -> bool:
    """Whether a write that failed with ``status`` (``None``: no answer) is retried."""
    return status is None or status in _RETRIED or status >= 500


def backoff_s(failures: int, cap_s: float) -> float:
    """Full-jitter exponential backoff after ``failures`` consecutive failed writes."""
    return random.uniform(0.0, min(cap_s, BACKOFF_BASE_S * 2.0 ** min(failures - 1, 30)))


def _compress_lines(lines: list[str]) -> tuple[bytes, Gzipped] | None:
    """The body of ``lines`` and its compression (in a worker thread); ``None`` on failure:
    the body is then compressed when it is written."""
    try:
        body = join_lines(lines)
        return body, gzip_body(body)
    except Exception:
        return None


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


def tick_period(period: float, arrived: int, longest: float) -> float:
    """The time to the next tick, after ``arrived`` points came in ``period``: enough for
    about :data:`TICK_TARGET_POINTS` at that rate, between :data:`MIN_TICK_S` and
    ``longest`` (an idle worker ticks every ``longest``).

    >>> tick_period(0.05, 4000, 0.05), tick_period(0.05, 150, 0.05)
    (0.004, 0.05)
    """
    if arrived <= 0:
        return longest
    return min(longest, max(MIN_TICK_S, period * TICK_TARGET_POINTS / arrived))


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
        # Lines are packed only beyond a quarter of the bound and two batches: a sender that
        # keeps up holds about one batch (it is woken as soon as one is waiting).
        self._buffer = Buffer(
            settings.max_buffer_points,
            make_encoder(settings),
            pack_after=max(settings.max_buffer_points // 4, 2 * settings.batch_size),
        )
        self.append: Callable[[PointTuple], None] = self._buffer.append
        """Buffer one point tuple (or :class:`Point`): the request path (a bound
        ``deque.append``; no I/O, never blocks)."""
        self.extend: Callable[[list[PointTuple]], None] = self._buffer.extend
        """Buffer several point tuples at once, oldest first (a request's estimation points)."""
        self._batch_size = settings.batch_size
        self._ahead_lines: Callable[[int], list[str]] | None = None
        if settings.compress and getattr(storage, "accepts_gzipped", False):
            self._ahead_lines = self._buffer.peek
        self.bodies_compressed_ahead = 0
        """Bodies written as compressed while the write before them was in flight."""
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
        self._spool: Spool | None = None
        self._replay: Replay | None = None
        self._spilling: asyncio.Future | None = None
        self._syncing: asyncio.Future | None = None
        self._spool_retry_at = self._replay_at = self._adopt_at = 0.0
        self._spool_warning = LogThrottle()

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
            **self._spool_stats(),
        }

    def _spool_stats(self) -> dict[str, int]:
        spool, replay = self._spool, self._replay
        if spool is None or replay is None:
            return {}
        return {
            "points_spooled": spool.points_spooled,
            "spool_bytes": spool.bytes,
            "points_replayed": replay.written,
            "points_replay_rejected": replay.rejected,
            "spool_points_dropped": spool.points_dropped,
            "spool_corrupt_frames": replay.corrupt_frames,
            "spool_corrupt_bytes": replay.corrupt_bytes,
            "spool_segments_adopted": spool.segments_adopted,
        }

    async def start(self) -> None:
        """Open the spool if one is set; start the tick and the sender on the running loop."""
        loop = asyncio.get_running_loop()
        if self.settings.spool_dir:
            await self._open_spool()
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
        await asyncio.gather(
            *(f for f in (self._spilling, self._syncing) if f is not None), return_exceptions=True
        )
        await self._drain_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline), self._lock:
                await self._final_flush(deadline)
        if self._spool is not None:
            await self._close_spool()
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
            if self._spool is not None:
                return  # what is left goes to the spool
            await asyncio.sleep(min(self._retry_at or 0.0, deadline) - loop.time())

    # -- tick: raw points -> sinks -> lines ------------------------------------------

    async def _tick_loop(self) -> None:
        longest = period = min(self.settings.flushing_period, TICK_S)
        while True:
            await asyncio.sleep(period)
            period = tick_period(period, self._buffer.raw, longest)
            try:
                await self._drain_all()
                if self._spool is not None:
                    await self._spill()
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
                    async with asyncio.timeout_at(self._next_pass_at(period)):
                        await self._wake.wait()
            # Woken by a full batch before the period: full batches only.
            due = self._retry_at is not None or loop.time() >= self._last_pass + period
            async with self._lock:
                await self._drain_all()
                if due:
                    self._last_pass = loop.time()
                if await self._deliver(self._buffer.lines if due else 0):
                    await self._replay_batch()
            if self._retry_at is not None and not self._buffer.lines and not self._replaying():
                self._retry_at = None  # nothing is left to retry

    def _next_pass_at(self, period: float) -> float:
        next_at = self._last_pass + period
        return min(next_at, self._replay_at) if self._replaying() else next_at

    async def _deliver(self, quota: int, source: Buffer | Replay | None = None) -> bool:
        """Write ``quota`` lines of ``source`` (the buffer), then full batches while there
        are; False after a failure."""
        buffer = self._buffer if source is None else source
        limit = self._batch_size
        ahead: asyncio.Future | None = None  # the next full batch, compressed meanwhile
        while buffer.lines and (quota > 0 or buffer.lines >= self._batch_size):
            body, count = buffer.begin(limit)
            if self._failures:
                self._retries += 1
            try:
                if ahead is not None:
                    body = await self._compressed_ahead(ahead, body)
                    ahead = None
                if source is None and self._ahead_lines and buffer.lines - count >= limit:
                    ahead = asyncio.ensure_future(
                        asyncio.to_thread(_compress_lines, self._ahead_lines(limit))
                    )
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
                self._rejected(error, count, buffer)
            except BaseException:
                buffer.keep()
                raise
            else:
                buffer.settle(count)
                self._succeeded()
            quota -= count
        return True

    async def _compressed_ahead(self, ahead: asyncio.Future, body: bytes) -> bytes:
        """``ahead``'s compressed body if it was made of the same lines as ``body``."""
        made = await ahead
        if made is None or made[0] != body:
            return body
        self.bodies_compressed_ahead += 1
        return made[1]

    async def _write(self, body: bytes) -> None:
        try:
            await self.storage.write(body)
        except WriteError:
            raise
        except Exception as exc:
            # Only the type: the text of an unexpected error may hold a secret.
            raise WriteError(None, f"unexpected {type(exc).__name__}") from None

    def _rejected(self, error: WriteError, count: int, source: Buffer | Replay) -> None:
        rejected = error.rejected
        if rejected is None:
            match = _PARTIAL_WRITE.search(error.message)
            rejected = int(match[1]) if match else count
        rejected = min(count, rejected)
        source.settle(count - rejected, rejected)
        if self._reject_warning.ready(asyncio.get_running_loop().time(), rejected):
            logger.warning(
                "monitoring: %s rejected %d points as bad data (%d in all): HTTP %s: %s",
                self.settings.target,
                self._reject_warning.take(),
                source.rejected,
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

    # -- spool: what the bound or the shutdown would drop, and its replay ---------------

    async def _open_spool(self) -> None:
        settings = self.settings
        try:
            spool = await asyncio.to_thread(
                Spool.open,
                settings.spool_dir,
                settings.service,
                server_number(),
                settings.spool_max_bytes,
                settings.spool_fsync,
            )
        except OSError as exc:
            logger.error(
                "monitoring: spool_dir %r cannot be used (%s): running without a spool, points "
                "beyond max_buffer_points are dropped; make it a directory this user can "
                'create and write, or set spool_dir to ""',
                settings.spool_dir,
                exc,
            )
            return
        self._spool, self._replay = spool, Replay(spool)
        self._buffer.spill = True
        await self._adopt()
        if spool.pending:
            logger.info(
                "monitoring: spool %s holds %d bytes not yet delivered; they are written back "
                "to %s",
                spool.directory,
                spool.bytes,
                settings.target,
            )

    async def _adopt(self) -> None:
        spool = self._spool
        assert spool is not None
        try:
            moved = await asyncio.to_thread(spool.adopt)
        except OSError as exc:
            logger.warning("monitoring: adopting the spool of stopped workers failed: %s", exc)
            return
        if moved:
            logger.info(
                "monitoring: adopted %d spool segments of stopped workers into %s",
                moved,
                spool.directory,
            )

    def _replaying(self) -> bool:
        """Whether spooled lines wait to be written back."""
        return self._replay is not None and bool(self._replay.lines or self._replay.spool.pending)

    async def _spill(self) -> None:
        """Move to the spool the lines the bound shed, then every waiting line while writes
        fail, else those beyond half the bound (after a failed spool write, only once
        ``SPOOL_RETRY_S`` have passed)."""
        spool, buffer = self._spool, self._buffer
        assert spool is not None
        if not buffer.spill:
            if asyncio.get_running_loop().time() < self._spool_retry_at:
                return
            buffer.spill = True
        # While writes fail, all that waits goes (the most room for a burst); else only
        # beyond half the bound, which a healthy writer seldom holds.
        lines = buffer.shed(0 if self._failures else buffer.max_points // 2)
        if lines:
            self._spilling = asyncio.ensure_future(self._write_spool(lines))
            await asyncio.shield(self._spilling)
            self._spilling = None
        if spool.sync_due() and (self._syncing is None or self._syncing.done()):
            # Not awaited: a slow fsync must not hold up the next spill.
            self._syncing = asyncio.ensure_future(asyncio.to_thread(spool.sync))

    async def _write_spool(self, lines: list[str]) -> int:
        """Spool ``lines``; on failure put back what was not written and pause the spool."""
        spool = self._spool
        assert spool is not None
        try:
            written, error = await asyncio.to_thread(spool.write, lines)
        except Exception as exc:  # a bug must not lose the lines
            written, error = 0, exc
        if error is not None:
            now = asyncio.get_running_loop().time()
            self._buffer.spill = False
            self._spool_retry_at = now + SPOOL_RETRY_S
            self._buffer.restore(lines[written:])
            if self._spool_warning.ready(now):
                logger.warning(
                    "monitoring: writing the spool in %s failed %d time(s) (%s): points beyond "
                    "max_buffer_points are dropped until it works again (retried every %g s)",
                    spool.directory,
                    self._spool_warning.take(),
                    error,
                    SPOOL_RETRY_S,
                )
        return written

    async def _close_spool(self) -> None:
        """Spool what could not be delivered; seal the segment, release the directory."""
        spool, replay = self._spool, self._replay
        assert spool is not None and replay is not None
        self._buffer.spill = True
        lines = self._buffer.shed(0)
        if lines:
            written = await self._write_spool(lines)
            logger.info(
                "monitoring: spooled %d undelivered points to %s; they are written when the "
                "service runs again",
                written,
                spool.directory,
            )
        replay.close()
        await asyncio.to_thread(spool.close)

    async def _replay_batch(self) -> None:
        """Write one batch of the spool back, at most ``spool_replay_points_per_s``."""
        replay = self._replay
        loop = asyncio.get_running_loop()
        if replay is None or loop.time() < self._replay_at:
            return
        if replay.lines < self._batch_size:
            await asyncio.to_thread(replay.fill, self._batch_size)
            for damage in replay.damaged:
                logger.warning("monitoring: spool segment %s; the rest is replayed", damage)
            replay.damaged.clear()
        count = replay.lines
        if not count:
            if loop.time() >= self._adopt_at:
                self._adopt_at = loop.time() + ADOPT_EVERY_S
                await self._adopt()
            return
        began = loop.time()
        await self._deliver(count, replay)
        self._replay_at = began + count / self.settings.spool_replay_points_per_s
