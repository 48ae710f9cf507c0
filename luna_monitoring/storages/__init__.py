"""Transports that deliver line-protocol bodies to InfluxDB."""

from __future__ import annotations

from typing import Protocol

from ..settings import Settings


class Storage(Protocol):
    """Writes one line-protocol body; raises on failure."""

    async def write(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


def make_storage(settings: Settings) -> Storage:
    """The storage for ``settings.version``."""
    if settings.version == 1:
        from .influx_v1 import InfluxV1Storage

        return InfluxV1Storage(settings)
    from .influx_v2 import InfluxV2Storage

    return InfluxV2Storage(settings)
