"""``check --dry-run``: reach the server and have it accept the credentials, writing nothing.

InfluxDB 1.x (``version`` 1): ``GET /ping``, then ``SHOW RETENTION POLICIES ON "<database>"``
with the credentials, which proves the login, the database and the retention policy.
``version`` 2: ``GET /ping`` (an InfluxDB 1.x before 1.8 says its version there: it has no
v2 write API), then ``GET /api/v2/buckets?name=<bucket>`` with the token. Servers without
that API (VictoriaMetrics, InfluxDB 1.8) can only be reached: the line says so.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from ..core.settings import Settings
from ..storages import WriteError as Refused
from ..storages import basic_auth, misconfiguration, redactor, server_message

_NOTHING_WRITTEN = "nothing written"


class DryRunFailed(Exception):
    """What the dry run found wrong, in one line without secrets."""


async def dry_run(settings: Settings) -> str:
    """Probe the server of ``settings``; the success line, or :class:`DryRunFailed`."""
    timeout = aiohttp.ClientTimeout(total=settings.write_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            return await _probe(session, settings)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = (
                f"no answer within {settings.write_timeout_s:g} s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            raise DryRunFailed(f"cannot reach {settings.url}: {reason}") from None


async def _probe(session: aiohttp.ClientSession, settings: Settings) -> str:
    async with session.get(f"{settings.url}/ping") as ping:
        if ping.status != 204:
            raise DryRunFailed(f"no InfluxDB at {settings.url}: /ping answered {ping.status}")
        server = ping.headers.get("X-Influxdb-Version", "")
    reached = f"reached {settings.target}" + (f" (InfluxDB {server})" if server else "")
    if settings.version == 1:
        return await _v1(session, settings, reached)
    if server.startswith("1.") and _before_1_8(server):
        raise DryRunFailed(misconfiguration(Refused(404, "404 page not found"), settings))
    return await _v2(session, settings, reached)


def _before_1_8(version: str) -> bool:
    minor = [*version.split("."), ""][1].split("~")[0]
    return minor.isdigit() and int(minor) < 8


async def _v1(session: aiohttp.ClientSession, settings: Settings, reached: str) -> str:
    headers: dict[str, str] = {}
    redact = basic_auth(settings, headers)
    database = settings.database.replace("\\", "\\\\").replace('"', '\\"')
    query = {"q": f'SHOW RETENTION POLICIES ON "{database}"'}
    async with session.get(f"{settings.url}/query", params=query, headers=headers) as answer:
        status, body = answer.status, await answer.read()
    if status == 401:
        raise DryRunFailed("authentication failed (401): check the username/password")
    payload = _json(body)
    results = payload.get("results") or [{}] if isinstance(payload, dict) else [{}]
    error = redact(str(results[0].get("error") or (server_message(body) if status >= 300 else "")))
    if error:
        # Named with the status a write would get (InfluxDB answers queries with 200).
        write_status = 404 if "database not found" in error else status
        found = misconfiguration(Refused(write_status, error), settings)
        raise DryRunFailed(found or f"SHOW RETENTION POLICIES answered {status}: {error}")
    series = (results[0].get("series") or [{}])[0]
    policies = [row[0] for row in series.get("values") or []]
    where = f"database {settings.database!r}"
    if settings.retention_policy:
        if settings.retention_policy not in policies:
            problem = Refused(500, "retention policy not found")
            raise DryRunFailed(misconfiguration(problem, settings))
        where += f" with retention policy {settings.retention_policy!r}"
    return f"{reached}: credentials accepted, {where} exists; {_NOTHING_WRITTEN}"


async def _v2(session: aiohttp.ClientSession, settings: Settings, reached: str) -> str:
    headers = {"Authorization": f"Token {settings.token}"} if settings.token else {}
    query = {"name": settings.bucket}
    if settings.organization:
        query["org"] = settings.organization
    async with session.get(
        f"{settings.url}/api/v2/buckets", params=query, headers=headers
    ) as answer:
        status, body = answer.status, await answer.read()
    if status in (400, 404, 405):
        return (
            f"{reached}: it has no bucket API (VictoriaMetrics, InfluxDB 1.8), so token and "
            f"bucket are not checked; {_NOTHING_WRITTEN} (check without --dry-run writes one "
            "point)"
        )
    if status == 401:
        raise DryRunFailed("authentication failed (401): check the token")
    if status >= 300:
        message = redactor(settings.token)(server_message(body))
        raise DryRunFailed(f"/api/v2/buckets answered {status}: {message}")
    payload = _json(body)
    buckets = payload.get("buckets") if isinstance(payload, dict) else None
    if not buckets:
        raise DryRunFailed(misconfiguration(Refused(404, "bucket not found"), settings))
    return f"{reached}: token accepted, bucket {settings.bucket!r} exists; {_NOTHING_WRITTEN}"


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
