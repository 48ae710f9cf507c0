"""Scriptable HTTP stub for answers real servers cannot be made to give.

:class:`StubServer` runs an aiohttp server in a background thread with its own
event loop on a free 127.0.0.1 port, so sync tests and real Sanic services can
both talk to it.  Every request on any path (``/write``, ``/api/v2/write``,
``/metrics``, ...) is recorded (:class:`RecordedRequest`, body already
gunzipped) and answered by a *responder*: a :class:`StubResponse` used for
every request, or a callable ``(RecordedRequest) -> StubResponse``.

Example::

    with StubServer(throttled(2, retry_after=1)) as stub:
        ...  # first two requests get 429 + Retry-After: 1, then 204
        assert [r.path for r in stub.wait_for_requests(3)] == ["/api/v2/write"] * 3
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "NO_CONTENT",
    "WRITE_PATHS",
    "RecordedRequest",
    "Responder",
    "StubResponse",
    "StubServer",
    "limit_lines",
    "scripted",
    "throttled",
]

WRITE_PATHS = frozenset({"/write", "/api/v2/write"})


@dataclass(frozen=True)
class StubResponse:
    """What the stub answers.

    ``delay`` postpones the answer (client timeouts); ``drop`` closes the
    connection without any answer (connection-reset errors).
    """

    status: int = 204
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


NO_CONTENT = StubResponse(204)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received by the stub."""

    index: int
    """0-based arrival order."""
    method: str
    path: str
    query: Mapping[str, str]
    """Query parameters (first value of each)."""
    headers: CIMultiDictProxy[str]
    """Case-insensitive request headers."""
    raw_body: bytes
    """Body as sent (possibly gzip-compressed)."""
    body: bytes
    """Body after undoing ``Content-Encoding`` (gzip/deflate)."""
    received_at: float
    """``time.monotonic()`` at arrival."""

    @property
    def content_encoding(self) -> str | None:
        """The ``Content-Encoding`` header, if any."""
        return self.headers.get("Content-Encoding")

    @property
    def lines(self) -> list[str]:
        """Non-empty lines of the decoded body (line protocol points)."""
        return [line for line in self.body.decode().splitlines() if line.strip()]


Responder = Callable[[RecordedRequest], StubResponse]


def _as_responder(value: Responder | StubResponse) -> Responder:
    if isinstance(value, StubResponse):
        return lambda _request: value
    return value


def scripted(*responses: StubResponse, then: Responder | StubResponse = NO_CONTENT) -> Responder:
    """Answer the first requests with ``responses`` in order, later ones with ``then``.

    Counts the requests this responder sees (not the server's ``index``).
    """
    counter = itertools.count()
    fallback = _as_responder(then)

    def respond(request: RecordedRequest) -> StubResponse:
        n = next(counter)
        return responses[n] if n < len(responses) else fallback(request)

    return respond


def throttled(
    n: int, retry_after: float | None = 1, then: Responder | StubResponse = NO_CONTENT
) -> Responder:
    """The first ``n`` requests get ``429`` (with ``Retry-After`` unless ``None``)."""
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    body = b'{"code":"too many requests","message":"throttled by stub"}'
    too_many = StubResponse(429, body, {**headers, "Content-Type": "application/json"})
    return scripted(*([too_many] * n), then=then)


def limit_lines(max_lines: int, then: Responder | StubResponse = NO_CONTENT) -> Responder:
    """Answer ``413`` when the body has more than ``max_lines`` lines, else ``then``."""
    fallback = _as_responder(then)
    too_large = StubResponse(
        413,
        b'{"code":"request too large","message":"too many lines (stub)"}',
        {"Content-Type": "application/json"},
    )

    def respond(request: RecordedRequest) -> StubResponse:
        return too_large if len(request.lines) > max_lines else fallback(request)

    return respond


def _decode_body(raw: bytes, encoding: str | None) -> bytes:
    """Undo gzip/deflate; an undecodable body is returned as is."""
    enc = (encoding or "").strip().lower()
    try:
        if enc == "gzip":
            return gzip.decompress(raw)
        if enc == "deflate":
            return zlib.decompress(raw)
    except (OSError, EOFError, zlib.error):
        pass
    return raw


class StubServer:
    """Recording HTTP stub in a background thread (see module docstring).

    ``port=0`` picks a free port on the first start; a stopped stub restarts
    on the same port (to simulate an outage with ``stop()`` / ``start()``).
    """

    def __init__(self, responder: Responder | StubResponse = NO_CONTENT, port: int = 0) -> None:
        self.port = port
        self._responder = _as_responder(responder)
        self._requests: list[RecordedRequest] = []
        self._next_index = 0
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- configuration and inspection ---------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def responder(self) -> Responder:
        """The current responder."""
        return self._responder

    @responder.setter
    def responder(self, value: Responder | StubResponse) -> None:
        self._responder = _as_responder(value)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of all requests received so far."""
        with self._cond:
            return list(self._requests)

    @property
    def writes(self) -> list[RecordedRequest]:
        """Recorded requests to ``/write`` or ``/api/v2/write``."""
        return [r for r in self.requests if r.path in WRITE_PATHS]

    def clear(self) -> None:
        """Forget recorded requests (``index`` keeps counting)."""
        with self._cond:
            self._requests.clear()

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests are recorded; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise AssertionError(
                    f"stub got {len(self._requests)} requests, expected >= {n} within {timeout}s"
                )
            return list(self._requests)

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("stub server already running")
        loop = asyncio.new_event_loop()
        started: Future[int] = Future()
        thread = threading.Thread(
            target=self._run, args=(loop, started), name="stub-server", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self.port = started.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- event loop thread ---------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, started: Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            port = loop.run_until_complete(self._serve())
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(port)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _serve(self) -> int:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress=False keeps the raw body, so tests can see the gzip.
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, auto_decompress=False, shutdown_timeout=0.5
        )
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        return int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        with self._cond:
            recorded = RecordedRequest(
                index=self._next_index,
                method=request.method,
                path=request.path,
                query={k: request.query.getone(k) for k in request.query},
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                raw_body=raw,
                body=_decode_body(raw, request.headers.get("Content-Encoding")),
                received_at=time.monotonic(),
            )
            self._next_index += 1
            self._requests.append(recorded)
            self._cond.notify_all()
        answer = self._responder(recorded)
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        if answer.drop:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
