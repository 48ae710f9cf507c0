"""Transports that deliver one line-protocol body to InfluxDB.

A storage sends a body once and reports a failure as :class:`WriteError`; retrying,
splitting and dropping are the writer's decisions. Bodies are gzip-compressed
(``Settings.compress``) in a worker thread (zlib releases the GIL), so the event loop never
waits for compression. Level 1 compresses request lines about 19 times at about 0.4 µs of
CPU per line, which the loopback default saves.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Protocol

import orjson

from ..core.settings import Settings

# Level 1: about a third of the CPU of level 9 for a body about 8 % larger.
GZIP_LEVEL = 1
_GZIP_WBITS = 31
_MESSAGE_CHARS = 300
HIDDEN = "<hidden>"


class WriteError(Exception):
    """A write that did not succeed.

    ``status`` is the HTTP status, or ``None`` when no answer came (connection refused or
    reset, timeout). ``message`` is the server's message, truncated, with secrets hidden.
    ``retry_after_s`` is the server's ``Retry-After`` in seconds, if it sent one.
    """

    def __init__(self, status: int | None, message: str, retry_after_s: float | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class Storage(Protocol):
    """Writes one line-protocol body; raises :class:`WriteError` on failure.

    A storage may name the line-protocol ``dialect`` its target reads (``"influxdb"`` when
    it does not; see :data:`luna_monitoring.core.point.DIALECTS`).
    """

    async def write(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


def make_storage(settings: Settings) -> Storage:
    """The storage for ``settings.version``.

    >>> storage = make_storage(Settings.from_config({"version": 1}))
    """
    if settings.version == 1:
        from .influx_v1 import InfluxV1Storage

        return InfluxV1Storage(settings)
    from .influx_v2 import InfluxV2Storage

    return InfluxV2Storage(settings)


async def encode_body(body: bytes, compress: bool) -> bytes:
    """``body`` gzip-compressed in a worker thread if ``compress``, else as it is."""
    if not compress:
        return body
    return await asyncio.to_thread(zlib.compress, body, GZIP_LEVEL, _GZIP_WBITS)


def redactor(*secrets: str) -> Callable[[str], str]:
    """A function that replaces every non-empty secret in a text by ``<hidden>``."""
    hidden = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in hidden:
            text = text.replace(secret, HIDDEN)
        return text

    return redact


def server_message(body: bytes | str | None) -> str:
    """The message of an InfluxDB error body (``message`` or ``error`` of its JSON).

    A long message is cut in the middle to 300 characters.
    """
    if not body:
        return ""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        text = str(payload.get("message") or payload.get("error") or text)
    text = " ".join(text.split())
    if len(text) <= _MESSAGE_CHARS:
        return text
    # The end stays: InfluxDB puts the count of dropped points there.
    return f"{text[: _MESSAGE_CHARS - 100]} ... {text[-95:]}"


def connection_message(exc: BaseException, timeout_s: float) -> str:
    """What went wrong when no HTTP answer came, without request details."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    >>> parse_retry_after("2.5")
    2.5
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
