"""InfluxDB 1.x ``/write`` transport. (Minimal first version.)"""

from __future__ import annotations

import aiohttp

from ..settings import Settings


class InfluxV1Storage:
    """POSTs line protocol to ``/write`` with aiohttp."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._params = {"db": settings.database, "precision": "ns"}
        self._session: aiohttp.ClientSession | None = None

    async def write(self, body: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            f"{self.settings.url}/write", params=self._params, data=body
        ) as response:
            if response.status >= 300:
                raise RuntimeError(f"InfluxDB answered {response.status}: {await response.text()}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
