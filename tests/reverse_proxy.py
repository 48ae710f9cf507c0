"""A reverse proxy that serves a real server under a path prefix, on any loopback address.

Deployments put InfluxDB behind nginx or a Kubernetes ingress at ``https://host/influx``;
:class:`ReverseProxy` does what those do for the tests: it listens on ``host`` (``::1`` by
default, so the client side is IPv6), strips ``prefix`` and forwards method, query, headers
and body unchanged to ``upstream``. Requests outside the prefix get nginx's 404.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

import aiohttp
from aiohttp import web
from servers import free_port

_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# aiohttp's server hands over request bodies already gunzipped.
_REQUEST_DROPPED = _HOP_HEADERS | {"content-encoding"}


class ReverseProxy:
    """``with ReverseProxy("http://127.0.0.1:8086", "/influx") as proxy: proxy.url``."""

    def __init__(self, upstream: str, prefix: str, host: str = "::1") -> None:
        self.upstream = upstream.rstrip("/")
        self.prefix = prefix.rstrip("/")
        self.host = host
        self.port = free_port()
        self.paths: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL including the prefix, e.g. ``http://[::1]:PORT/influx``."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}{self.prefix}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if not request.path.startswith(self.prefix + "/"):
            return web.Response(status=404, text="404 page not found")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_DROPPED}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.upstream + request.path[len(self.prefix) :],
                params=request.query,
                headers=headers,
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
            return web.Response(status=answer.status, body=body, headers=kept)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
