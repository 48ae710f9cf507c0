"""Background delivery: buffer, flush loop, retry, shutdown. (Minimal first version.)"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from .point import LineEncoder, Point, join_lines
from .settings import Settings
from .storages import Storage

logger = logging.getLogger("luna_monitoring")
Sink = Callable[[list[Point]], None]


class Writer:
    """Buffers points of one worker and writes them in the background."""

    def __init__(self, settings: Settings, storage: Storage, sinks: Sequence[Sink] = ()) -> None:
        self.settings = settings
        self.storage = storage
        self.sinks = tuple(sinks)
        self._buffer: deque[Point] = deque()
        self.append: Callable[[Point], None] = self._buffer.append
        self._encoder = LineEncoder()
        self._task: asyncio.Task | None = None
        self._written = 0
        self._errors = 0

    async def start(self) -> None:
        """Start the flush loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flushing_period)
            try:
                await self.flush()
            except Exception:
                self._errors += 1
                logger.exception("monitoring write to %s failed", self.settings.target)

    async def flush(self) -> None:
        """Write everything buffered now."""
        points = list(self._buffer)
        self._buffer.clear()
        for sink in self.sinks:
            sink(points)
        lines = self._encoder.encode_lines(points)
        for start in range(0, len(lines), self.settings.batch_size):
            batch = lines[start : start + self.settings.batch_size]
            await self.storage.write(join_lines(batch))
            self._written += len(batch)

    async def stop(self) -> None:
        """Stop the loop and write what is left."""
        if self._task:
            self._task.cancel()
        await self.flush()
        await self.storage.close()

    @property
    def stats(self) -> dict[str, int]:
        """Delivery counters."""
        return {
            "points_buffered": len(self._buffer),
            "points_written": self._written,
            "points_dropped": 0,
            "write_errors": self._errors,
        }
