"""Transports that deliver one body of encoded points: line protocol to InfluxDB, rows to
ClickHouse (:mod:`.clickhouse`).

A storage sends a body once and reports a failure as :class:`WriteError`; retrying,
splitting and dropping are the writer's decisions. Bodies are gzip-compressed
(``Settings.compress``) in a worker thread (zlib releases the GIL), so the event loop never
waits for compression. Level 1 compresses request lines about 4 times (unique request ids
and timings; repetitive lines far more) at about 1.1 µs of CPU per line
(``bench/gzip_ratio.py``), which the loopback default saves. A storage whose
``accepts_gzipped`` is true takes a :class:`Gzipped` body too (the writer compresses the next
batch while the current one is written) and sends it as it is.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from base64 import b64encode
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Protocol

import orjson

from ..core.point import LineEncoder
from ..core.settings import Settings
from .clickhouse_rows import RowEncoder

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
    ``rejected``: of a refused batch, the points refused when not all were (the rest were
    stored).
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        retry_after_s: float | None = None,
        rejected: int | None = None,
    ):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
        self.rejected = rejected


class Gzipped(bytes):
    """A request body already compressed by :func:`gzip_body`: :func:`encode_body` passes it
    on as it is."""

    __slots__ = ()


def gzip_body(body: bytes) -> Gzipped:
    """``body`` compressed as :func:`encode_body` compresses it (call it off the event loop)."""
    return Gzipped(zlib.compress(body, GZIP_LEVEL, _GZIP_WBITS))


class Storage(Protocol):
    """Writes one body of lines from :func:`make_encoder`; raises :class:`WriteError`.

    A storage may also have ``accepts_gzipped``: if true, ``write`` takes a :class:`Gzipped`
    body and sends it as it is.
    """

    async def write(self, body: bytes) -> None: ...

    async def close(self) -> None: ...


def misconfiguration(error: WriteError, settings: Settings) -> str | None:
    """What a failed write says is wrong in the configuration, with the fix; else ``None``.

    A missing database, bucket, organization or retention policy, or no write endpoint at
    the URL (``version`` 2 against InfluxDB 1.x before 1.8): retrying fixes none of them.
    ClickHouse's missing database or tables are not among them: the storage's message names
    the fix, and they are retried as usual, since ``create_tables`` or an operator applying
    ``clickhouse-schema`` makes them appear while the service runs.
    """
    if settings.storage_type == "clickhouse":
        return None
    status, text = error.status, error.message.lower()
    v2 = settings.version == 2
    if status == 404 and "page not found" in text:
        if v2:
            return (
                f"no /api/v2/write at {settings.url} (404): "
                "for InfluxDB 1.x before 1.8 use version 1"
            )
        return f"no /write at {settings.url} (404): check url, or host and port"
    if "retention policy not found" in text:
        return (
            f"retention policy {settings.retention_policy!r} not found on database "
            f"{settings.database!r} ({status}): create it, or leave retention_policy empty"
        )
    if "database not found" in text or (status == 404 and not v2):
        name = settings.bucket.split("/")[0] if v2 else settings.database
        return f"database {name!r} not found ({status}): create it first"
    if status == 404:
        return (
            f"bucket {settings.bucket!r} or organization {settings.organization!r} not found "
            "(404): create the bucket, check the organization"
        )
    return None


def make_storage(settings: Settings) -> Storage:
    """The storage for ``settings.storage_type`` and ``settings.version``.

    >>> storage = make_storage(Settings.from_config({"version": 1}))
    """
    if settings.storage_type == "clickhouse":
        from .clickhouse import ClickHouseStorage

        return ClickHouseStorage(settings)
    if settings.version == 1:
        from .influx_v1 import InfluxV1Storage

        return InfluxV1Storage(settings)
    from .influx_v2 import InfluxV2Storage

    return InfluxV2Storage(settings)


def make_encoder(settings: Settings) -> LineEncoder | RowEncoder:
    """The encoder of the lines ``make_storage(settings)`` writes.

    >>> Buffer(settings.max_buffer_points, make_encoder(settings))
    """
    if settings.storage_type == "clickhouse":
        return RowEncoder(settings.table_prefix)
    return LineEncoder(settings.influx_dialect)


async def encode_body(body: bytes, compress: bool) -> bytes:
    """``body`` gzip-compressed in a worker thread if ``compress`` (unless it is
    :class:`Gzipped` already), else as it is."""
    if not compress or type(body) is Gzipped:
        return body
    return await asyncio.to_thread(gzip_body, body)


def basic_auth(settings: Settings, headers: dict[str, str]) -> Callable[[str], str]:
    """Add ``Authorization: Basic`` to ``headers`` if ``username`` or ``password`` is set;
    return the :func:`redactor` of the password and of that header's value."""
    basic = ""
    if settings.username or settings.password:
        basic = b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    return redactor(settings.password, basic)


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
