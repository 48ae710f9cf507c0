"""requests and errors points, read back from a real InfluxDB 1.x; add_request_tags/fields."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest
from apps.equivalent import monitoring_of
from implementations import whole_nanoseconds
from sanic import Request
from sanic.response import empty, json, text
from servers import InfluxDatabase

from luna_monitoring import add_request_fields, add_request_tags
from luna_monitoring.core.request_id import is_request_id

SERVICE = "luna-remote-sdk"
HEADER = "LUNA-Request-Id"
GIVEN_ID = "1700000000,6a5c2191-3e9b-f5a4-fa2b-c7bb3a6d2ad4"


Served = Callable[..., Awaitable[tuple[Any, httpx.AsyncClient]]]


@pytest.fixture
async def served(build_app) -> Any:
    """``await served(**monitoring)`` -> (app, client) of a running app of ``framework`` with
    the routes of ``tests/apps/equivalent.py``."""
    clients = []

    async def factory(**monitoring: Any) -> tuple[Any, httpx.AsyncClient]:
        app, base = await build_app(**monitoring)
        client = httpx.AsyncClient(base_url=base, timeout=10)
        clients.append(client)
        return app, client

    yield factory
    for client in clients:
        await client.aclose()


async def stored(app: Any, db: InfluxDatabase, measurement: str) -> list[dict]:
    """Flush the app's buffer; every stored point of ``measurement``, oldest first."""
    assert await monitoring_of(app).flush()
    return db.query(f'SELECT * FROM "{measurement}"')


def field_types(db: InfluxDatabase, measurement: str) -> dict[str, str]:
    return {
        r["fieldKey"]: r["fieldType"] for r in db.query(f'SHOW FIELD KEYS FROM "{measurement}"')
    }


def tag_keys(db: InfluxDatabase, measurement: str) -> set[str]:
    return {row["tagKey"] for row in db.query(f'SHOW TAG KEYS FROM "{measurement}"')}


class TestRequestsPoint:
    async def test_route_is_the_template_with_status_and_fields(self, served, influx_db, spell):
        app, client = await served()
        before = time.time_ns()
        response = await client.get("/handlers/abc")
        [point] = await stored(app, influx_db, "requests")
        assert response.status_code == 200
        assert (point["service"], point["route"], point["status_code"]) == (
            SERVICE,
            spell("GET:/handlers/<handler_id>"),
            "200",
        )
        assert point["request_id"] == response.headers[HEADER] == response.json()["seen_id"]
        assert 0 < point["execution_time"] < 1
        assert before <= point["time"] <= time.time_ns()
        assert tag_keys(influx_db, "requests") == {"service", "route", "status_code"}
        assert field_types(influx_db, "requests") == {
            "execution_time": "float",
            "request_id": "string",
        }

    async def test_time_is_the_start_and_execution_time_the_duration(self, served, influx_db):
        app, client = await served()
        before = time.time_ns()
        await client.get("/sleep", params={"s": "1"})
        after = time.time_ns()
        [point] = await stored(app, influx_db, "requests")
        assert before <= point["time"] < before + 500_000_000  # the end is 1 s later
        assert 1 <= point["execution_time"] <= (after - point["time"]) / 1e9
        assert whole_nanoseconds(point["execution_time"]), point["execution_time"]

    async def test_success_emits_no_errors_point(self, served, influx_db):
        app, client = await served()
        await client.get("/handlers/1")
        assert len(await stored(app, influx_db, "requests")) == 1
        assert influx_db.count("errors") == 0

    async def test_head_request_has_its_own_route(self, served, influx_db, spell):
        app, client = await served()
        response = await client.head("/handlers/abc")
        [point] = await stored(app, influx_db, "requests")
        assert (response.status_code, point["route"], point["status_code"]) == (
            200,
            spell("HEAD:/handlers/<handler_id>"),
            "200",
        )
        assert point["request_id"] == response.headers[HEADER]

    async def test_streamed_response_emits_one_point_timed_to_its_start(self, served, influx_db):
        app, client = await served()
        response = await client.get("/stream")
        [point] = await stored(app, influx_db, "requests")
        assert response.text == "0\n1\n2\n"
        assert (point["route"], point["status_code"]) == ("GET:/stream", "200")
        assert point["request_id"] == response.headers[HEADER]
        assert point["execution_time"] < 0.15  # the stream itself takes 0.15 s

    async def test_excluded_routes_emit_nothing_but_keep_the_request_id(
        self, served, influx_db, spell
    ):
        app, client = await served(excluded_routes=["^GET:/health$", "unmatched"])
        health = await client.get("/health")
        await client.get("/health")
        await client.get("/nowhere")
        await client.get("/handlers/1")
        [point] = await stored(app, influx_db, "requests")
        assert point["route"] == spell("GET:/handlers/<handler_id>")
        assert influx_db.count("errors") == 0
        assert is_request_id(health.headers[HEADER])

    async def test_thousand_concurrent_requests_store_thousand_points(self, served, influx_db):
        app, client = await served()
        url = f"{client.base_url}/handlers/same"

        async def get(session: aiohttp.ClientSession) -> tuple[int, str]:
            async with session.get(url) as response:
                return response.status, response.headers[HEADER]

        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as session:
            answers = await asyncio.wait_for(
                asyncio.gather(*(get(session) for _ in range(1000))), 60
            )
        points = await stored(app, influx_db, "requests")
        assert {status for status, _ in answers} == {200}
        assert len(points) == 1000
        assert {p["request_id"] for p in points} == {request_id for _, request_id in answers}


class TestErrorsPoint:
    async def test_unhandled_exception_is_500_with_error_code_0(self, served, influx_db):
        app, client = await served()
        response = await client.get("/crash")
        [request] = await stored(app, influx_db, "requests")
        [error] = await stored(app, influx_db, "errors")
        assert response.status_code == 500
        assert (request["route"], request["status_code"]) == ("GET:/crash", "500")
        assert {k: error[k] for k in ("service", "route", "status_code", "error_code")} == {
            "service": SERVICE,
            "route": "GET:/crash",
            "status_code": "500",
            "error_code": "0",
        }
        assert error["request_id"] == request["request_id"] == response.headers[HEADER]
        assert error["time"] == request["time"]
        assert tag_keys(influx_db, "errors") == {"service", "route", "status_code", "error_code"}
        assert field_types(influx_db, "errors") == {"request_id": "string"}

    async def test_error_code_attribute_of_the_exception(self, served, influx_db):
        app, client = await served()
        response = await client.get("/luna_error")
        [error] = await stored(app, influx_db, "errors")
        assert (response.status_code, error["status_code"], error["error_code"]) == (
            400,
            "400",
            "11021",
        )

    @pytest.mark.parametrize(("code", "expected"), [("7", "7"), ("seven", "0")])
    async def test_integer_error_code_of_a_json_body(self, served, influx_db, code, expected):
        app, client = await served()
        await client.get("/json_error", params={"code": code})
        [error] = await stored(app, influx_db, "errors")
        assert (error["route"], error["status_code"], error["error_code"]) == (
            "GET:/json_error",
            "422",
            expected,
        )

    async def test_a_body_that_is_not_json_is_not_read(self, served, influx_db):
        app, client = await served()
        await client.get("/text_error")
        [error] = await stored(app, influx_db, "errors")
        assert (error["status_code"], error["error_code"]) == ("400", "0")

    async def test_unknown_path_is_unmatched_404(self, served, influx_db):
        app, client = await served()
        response = await client.post("/no/such/path/42")
        [request] = await stored(app, influx_db, "requests")
        [error] = await stored(app, influx_db, "errors")
        assert response.status_code == 404
        assert request["route"] == error["route"] == "POST:__unmatched__"
        assert (error["status_code"], error["error_code"]) == ("404", "0")

    async def test_wrong_method_uses_the_template_of_the_path(self, served, influx_db, spell):
        app, client = await served()
        response = await client.delete("/handlers/abc")
        [error] = await stored(app, influx_db, "errors")
        assert response.status_code == 405
        route = spell("DELETE:/handlers/<handler_id>")
        assert (error["route"], error["status_code"]) == (route, "405")

    async def test_unknown_methods_and_bad_requests_are_other(self, served, influx_db, framework):
        app, client = await served()
        port = client.base_url.port
        for raw in (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", b"garbage\r\n\r\n"):
            await asyncio.to_thread(_exchange, port, raw)
        errors = await stored(app, influx_db, "errors")
        assert sorted((e["route"], e["status_code"]) for e in errors) == [
            ("OTHER:__unmatched__", "400"),
            # aiohttp's parser refuses a method it does not know; Sanic routes it
            ("OTHER:__unmatched__", "404" if framework == "sanic" else "400"),
        ]


def _exchange(port: int, raw: bytes) -> bytes:
    """Send raw bytes on a new connection; the response head."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return sock.recv(65536).partition(b"\r\n\r\n")[0]


class TestRequestId:
    async def test_well_formed_incoming_id_is_kept(self, served, influx_db):
        app, client = await served()
        response = await client.get("/handlers/1", headers={HEADER: GIVEN_ID})
        [point] = await stored(app, influx_db, "requests")
        assert response.headers[HEADER] == response.json()["seen_id"] == GIVEN_ID
        assert point["request_id"] == GIVEN_ID

    async def test_malformed_incoming_id_is_replaced(self, served, influx_db):
        app, client = await served()
        before = int(time.time())
        response = await client.get("/handlers/1", headers={HEADER: "not-an-id"})
        [point] = await stored(app, influx_db, "requests")
        made = response.headers[HEADER]
        assert is_request_id(made) and point["request_id"] == made
        assert before <= int(made.partition(",")[0]) <= time.time()

    async def test_every_request_gets_its_own_id(self, served, influx_db):
        _, client = await served()
        ids = {(await client.get("/handlers/1")).headers[HEADER] for _ in range(20)}
        assert len(ids) == 20


class TestHandlerTagsAndFields:
    async def test_added_tags_and_fields_land_on_the_requests_point(self, served, influx_db):
        app, client = await served()
        response = await client.post("/sdk")
        [point] = await stored(app, influx_db, "requests")
        assert response.status_code == 200
        assert (point["route"], point["account"], point["api_version"], point["region"]) == (
            "POST:/sdk",
            "a1",
            "6",
            "eu",
        )
        assert tag_keys(influx_db, "requests") == {
            "service",
            "route",
            "status_code",
            "account",
            "api_version",
            "region",
        }
        assert point["load_images_for_processing_time"] == 2.0
        assert (point["images"], point["cached"], point["note"]) == (3, True, "x")
        assert "skipped" not in point and "nan_time" not in point
        assert field_types(influx_db, "requests") == {
            "cached": "boolean",
            "execution_time": "float",
            "images": "integer",
            "load_images_for_processing_time": "float",
            "note": "string",
            "request_id": "string",
        }

    async def test_values_that_cannot_be_written_are_left_out_and_counted(
        self, served, influx_db, caplog
    ):
        """The request succeeds; its point keeps everything else; nothing else is minted."""
        app, client = await served()
        response = await client.post("/hostile")
        [point] = await stored(app, influx_db, "requests")
        assert response.status_code == 200
        assert (point["route"], point["status_code"], point["service"]) == (
            "POST:/hostile",
            "200",
            SERVICE,
        )
        assert (point["ok"], point["n"], point["ratio"], point["parts"]) == ("k", 4, 0.25, 1.5)
        assert point["load_images_for_processing_time"] == 1.5
        assert point["request_id"] == response.headers[HEADER]
        assert point["injected"] == "boom\\ninjected,host=evil value=666 1"
        assert tag_keys(influx_db, "requests") == {"service", "route", "status_code", "ok"}
        assert set(field_types(influx_db, "requests")) == {
            "execution_time",
            "request_id",
            "load_images_for_processing_time",
            "injected",
            "n",
            "parts",
            "ratio",
        }
        assert [row["name"] for row in influx_db.query("SHOW MEASUREMENTS")] == ["requests"]
        stats = monitoring_of(app).stats
        assert (stats["tags_dropped"], stats["fields_dropped"]) == (4, 5)
        assert (stats["points_written"], stats["points_invalid"]) == (1, 0)
        [warning] = [r for r in caplog.records if "left out" in r.getMessage()]
        assert "left out 9 field(s) or tag(s)" in warning.getMessage()

    def test_unmonitored_request_is_left_alone(self):
        request = SimpleNamespace(ctx=SimpleNamespace())
        add_request_tags(request, account="a1")
        add_request_fields(request, images=1)
        assert vars(request.ctx) == {}


class TestAlongsideAiohttpsOwnHooks:
    async def test_middleware_and_prepare_signal_see_the_id_and_the_header(self, influx_db):
        from aiohttp import web

        from luna_monitoring.aiohttp import get_request_id, setup_monitoring

        seen = {}

        @web.middleware
        async def middleware(request, handler):
            seen["request"] = get_request_id(request)
            response = await handler(request)
            seen["before_prepare"] = response.headers.get(HEADER)
            return response

        async def on_prepare(request, response):
            seen["signal"] = response.headers.get(HEADER)

        async def plain(request):
            return web.Response(text="ok")

        app = web.Application(middlewares=[middleware])
        app.on_response_prepare.append(on_prepare)
        app.router.add_get("/plain", plain)
        setup_monitoring(
            app, {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get("/plain")
            [point] = await stored(app, influx_db, "requests")
        finally:
            await runner.cleanup()
        assert seen == {
            "request": point["request_id"],
            "before_prepare": None,
            "signal": point["request_id"],
        }
        assert response.headers[HEADER] == point["request_id"]
        assert get_request_id(web.Request.__new__(web.Request)) is None


class TestAlongsideTheAppsOwnHooks:
    async def test_app_middleware_sees_the_request_id_and_the_header(
        self, make_app, serve_app, influx_db
    ):
        app = make_app()
        seen = {}

        @app.get("/handlers/<handler_id>")
        async def get_handler(request, handler_id):
            return empty()

        @app.on_request
        def before(request):
            seen["request"] = request.ctx.request_id

        @app.on_response
        def after(request, response):
            seen["response"] = response.headers.get(HEADER)

        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            response = await client.get("/handlers/1")
        [point] = await stored(app, influx_db, "requests")
        assert seen == {"request": point["request_id"], "response": point["request_id"]}
        assert response.headers[HEADER] == point["request_id"]

    async def test_a_context_first_used_after_the_response_has_the_sent_id(
        self, make_app, serve_app, influx_db
    ):
        app = make_app()
        seen = {}

        @app.get("/plain")
        async def plain(request):
            return text("no ctx here")

        @app.on_response
        def after(request, response):
            seen["ctx"] = request.ctx.request_id

        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            response = await client.get("/plain")
        [point] = await stored(app, influx_db, "requests")
        assert seen["ctx"] == response.headers[HEADER] == point["request_id"]

    async def test_a_context_type_without_room_for_the_id_still_works(
        self, make_app, serve_app, influx_db
    ):
        class SlottedContext:
            __slots__ = ("user",)

        class AppRequest(Request):
            @staticmethod
            def make_context():
                return SlottedContext()

        app = make_app(request_class=AppRequest)

        @app.get("/user")
        async def user(request):
            request.ctx.user = "u1"
            return json({"user": request.ctx.user, "type": type(request).__name__})

        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            response = await client.get("/user")
        [point] = await stored(app, influx_db, "requests")
        assert response.json() == {"user": "u1", "type": "MonitoredAppRequest"}
        assert is_request_id(response.headers[HEADER])
        assert point["request_id"] == response.headers[HEADER]

    async def test_a_second_response_is_not_counted_again(self, make_app, serve_app, influx_db):
        app = make_app()

        @app.get("/twice")
        async def twice(request):
            response = await request.respond(content_type="text/plain")
            await response.send("first")
            await request.respond(text("second"))  # Sanic refuses a second response

        async with httpx.AsyncClient(base_url=await serve_app(app)) as client:
            response = await client.get("/twice")
        [point] = await stored(app, influx_db, "requests")
        assert response.text == "first"
        assert (point["route"], point["status_code"]) == ("GET:/twice", "200")
        assert point["request_id"] == response.headers[HEADER]
