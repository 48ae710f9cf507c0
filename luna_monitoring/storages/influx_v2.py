"""InfluxDB v2 ``/api/v2/write`` transport through influxdb-client's async client."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from influxdb_client.client import exceptions as influxdb_exceptions
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


class _OwnLoggerLogging:
    """The ``logging`` module, except that ``logging.debug(...)`` goes to one named logger."""

    def __init__(self, logger: logging.Logger) -> None:
        self.debug = logger.debug

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)


def _keep_root_logger_unconfigured() -> None:
    """Route influxdb-client's root-logger call to its own logger.

    ``InfluxDBError`` logs an error body that is not JSON (``401 Unauthorized``, ``404 page
    not found``) with ``logging.debug``: on the root logger, which runs
    ``logging.basicConfig()`` when the root logger has no handler, so the application's
    logging would change behind its back (every line printed twice). The call goes to
    ``influxdb_client.client.exceptions``' own logger instead.
    """
    if getattr(influxdb_exceptions, "logging", None) is logging:
        own = logging.getLogger(influxdb_exceptions.__name__)
        influxdb_exceptions.logging = _OwnLoggerLogging(own)  # type: ignore[assignment]


_keep_root_logger_unconfigured()


class InfluxV2Storage:
    """Writes line protocol with ``InfluxDBClientAsync``'s write service.

    With ``settings.compress`` the body is compressed here, off the event loop, and sent
    with ``Content-Encoding: gzip``; the client's own ``enable_gzip`` would compress at
    level 9 on the event loop.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redact = redactor(settings.token)
        self._gzip = settings.compress
        self.accepts_gzipped = self._gzip
        """Whether :meth:`write` takes a :class:`~luna_monitoring.storages.Gzipped` body."""
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
