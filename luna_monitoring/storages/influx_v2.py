"""InfluxDB v2 ``/api/v2/write`` transport through influxdb-client's async client."""

from __future__ import annotations

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from ..settings import Settings


class InfluxV2Storage:
    """Writes line protocol with ``WriteApiAsync`` (gzip on)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: InfluxDBClientAsync | None = None

    async def write(self, body: bytes) -> None:
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self.settings.url,
                token=self.settings.token,
                org=self.settings.organization,
                enable_gzip=True,
            )
        await self._client.write_api().write(
            bucket=self.settings.bucket, org=self.settings.organization, record=body
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
