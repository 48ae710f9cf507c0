"""InfluxDB v2 ``/api/v2/write`` transport through influxdb-client's async client."""

from __future__ import annotations

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from ..core.settings import Settings
from . import (
    WriteError,
    connection_message,
    encode_body,
    parse_retry_after,
    redactor,
    server_message,
)


class InfluxV2Storage:
    """Writes line protocol with ``InfluxDBClientAsync``'s write service.

    With ``settings.compress`` the body is compressed here, off the event loop, and sent
    with ``Content-Encoding: gzip``; the client's own ``enable_gzip`` would compress at
    level 9 on the event loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.dialect = settings.influx_dialect
        """The line-protocol dialect its target reads (``influx_dialect``)."""
        self._settings = settings
        self._redact = redactor(settings.token)
        self._gzip = settings.compress
        self._client: InfluxDBClientAsync | None = None
        self._service: WriteService | None = None

    def __repr__(self) -> str:
        return f"InfluxV2Storage({self._settings.target})"

    def _open(self) -> WriteService:
        settings = self._settings
        self._client = InfluxDBClientAsync(
            url=settings.url,
            token=settings.token,
            org=settings.organization,
            timeout=settings.write_timeout_s * 1000,
            verify_ssl=True,
        )
        self._service = WriteService(self._client.api_client)
        return self._service

    async def write(self, body: bytes) -> None:
        """Send one body; raise :class:`WriteError` unless the server answers 2xx."""
        service = self._service or self._open()
        data = await encode_body(body, self._gzip)
        try:
            await service.post_write_async(
                org=self._settings.organization,
                bucket=self._settings.bucket,
                body=data,
                precision="ns",
                content_encoding="gzip" if self._gzip else "identity",
                content_type="text/plain; charset=utf-8",
            )
        except ApiException as exc:
            retry_after = parse_retry_after((exc.headers or {}).get("Retry-After"))
            message = self._redact(server_message(exc.body) or str(exc.reason or ""))
            raise WriteError(exc.status, message, retry_after) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            message = self._redact(connection_message(exc, self._settings.write_timeout_s))
            raise WriteError(None, message) from None

    async def close(self) -> None:
        """Close the client and its HTTP session."""
        if self._client is not None:
            await self._client.close()
            self._client = self._service = None
