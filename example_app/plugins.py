"""A monitoring plugin that appends every point to a file as one JSON object per line.

Enable it in the ``MONITORING`` section and choose the file (default
``monitoring_points.jsonl`` in the working directory)::

    app.config.MONITORING["plugins"] = ["example_app.plugins:JsonLinesPlugin"]
    app.config.MONITORING_JSONL_PATH = "/var/log/luna/points.jsonl"

Sanic also reads ``MONITORING_JSONL_PATH`` from the environment variable
``SANIC_MONITORING_JSONL_PATH``; on aiohttp (no app config) the plugin reads the environment
variable ``MONITORING_JSONL_PATH``. Each line looks like
``{"series":"requests","time_ns":...,"tags":{...},"fields":{...}}``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, BinaryIO

import orjson

from luna_monitoring import BaseRequestMonitoringPlugin
from luna_monitoring.core.point import Point

DEFAULT_PATH = "monitoring_points.jsonl"


class JsonLinesPlugin(BaseRequestMonitoringPlugin):
    """Appends points as JSON lines; every worker appends to the same file.

    Lines are written in chunks of whole lines (at most 64 KiB or 1 s apart while points
    arrive, and at shutdown), each chunk with one ``write`` to a file opened for appending,
    so lines of different workers never interleave. File I/O runs in a thread.
    """

    chunk_bytes = 64 * 1024
    chunk_interval_s = 1.0

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        settings = getattr(app, "config", None) or os.environ  # Sanic: its config
        self.path = str(settings.get("MONITORING_JSONL_PATH", DEFAULT_PATH))
        self._file: BinaryIO | None = None
        self._lines: list[bytes] = []
        self._size = 0
        self._written_at = time.monotonic()

    async def initialize(self) -> None:
        """Open the file for appending (created if missing)."""
        self._file = await asyncio.to_thread(open, self.path, "ab", buffering=0)

    async def flush_point_to_monitoring(self, point: Point) -> None:
        """Queue the point's line; write the chunk when it is big or old enough."""
        line = orjson.dumps(
            {
                "series": point.series,
                "time_ns": point.time_ns,
                "tags": dict(point.tags),
                "fields": dict(point.fields),
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        self._lines.append(line)
        self._size += len(line)
        if (
            self._size >= self.chunk_bytes
            or time.monotonic() - self._written_at >= self.chunk_interval_s
        ):
            await self._write()

    async def close(self) -> None:
        """Write what is left and close the file."""
        if self._file is not None:
            await self._write()
            await asyncio.to_thread(self._file.close)

    async def _write(self) -> None:
        chunk = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        self._written_at = time.monotonic()
        await asyncio.to_thread(self._file.write, chunk)
