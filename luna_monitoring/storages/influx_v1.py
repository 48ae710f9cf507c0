"""InfluxDB 1.x ``/write`` transport over aiohttp."""

from __future__ import annotations

import aiohttp

from ..core.settings import Settings
from . import (
    WriteError,
    basic_auth,
    connection_message,
    encode_body,
    parse_retry_after,
    server_message,
)


class InfluxV1Storage:
    """POSTs line protocol to ``/write?db=&rp=&precision=ns``, gzip-compressed if
    ``settings.compress``.

    Credentials go in an ``Authorization: Basic`` header, never in the URL.
    """

    def __init__(self, settings: Settings) -> None:
        self._target = settings.target
        self._url = f"{settings.url}/write"
        self._params = {"db": settings.database, "precision": "ns"}
        if settings.retention_policy:
            self._params["rp"] = settings.retention_policy
        self._gzip = settings.compress
        self.accepts_gzipped = self._gzip
        """Whether :meth:`write` takes a :class:`~luna_monitoring.storages.Gzipped` body."""
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._redact = basic_auth(settings, self._headers)
        self._timeout_s = settings.write_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"InfluxV1Storage({self._target})"

    async def write(self, body: bytes) -> None:
        """Send one body; raise :class:`WriteError` unless the server answers 2xx."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        data = await encode_body(body, self._gzip)
        try:
            async with self._session.post(
                self._url, params=self._params, data=data, headers=self._headers
            ) as response:
                if response.status < 300:
                    return
                text = server_message(await response.read())
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            message = self._redact(connection_message(exc, self._timeout_s))
            raise WriteError(None, message) from None
        raise WriteError(response.status, self._redact(text), retry_after)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
