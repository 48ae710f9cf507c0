"""InfluxDB transports: what goes on the wire, what comes back, how failures are reported."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from reverse_proxy import ReverseProxy
from servers import (
    InfluxDatabase,
    VictoriaMetrics,
    VictoriaMetricsWithAuth,
    free_port,
    unique_name,
)
from stub_server import StubResponse, StubServer

from luna_monitoring.core.settings import Settings
from luna_monitoring.storages import (
    Storage,
    WriteError,
    make_encoder,
    make_storage,
    parse_retry_after,
    redactor,
    server_message,
)
from luna_monitoring.storages.influx_v1 import InfluxV1Storage
from luna_monitoring.storages.influx_v2 import InfluxV2Storage

TOKEN = "tok-SECRET-1234"
PASSWORD = "pw-SECRET-5678"
APPS = Path(__file__).parent / "apps"
BASIC = base64.b64encode(f"luna:{PASSWORD}".encode()).decode()


def settings(**config: Any) -> Settings:
    return Settings.from_config(config)


async def write(storage: Storage, body: bytes) -> None:
    try:
        await storage.write(body)
    finally:
        await storage.close()


async def failure(storage: Storage, body: bytes = b"m x=1i 1") -> WriteError:
    with pytest.raises(WriteError) as info:
        await write(storage, body)
    return info.value


class TestMakeStorage:
    def test_version_2_is_influxdb_client(self) -> None:
        assert isinstance(make_storage(settings(version=2)), InfluxV2Storage)

    @pytest.mark.parametrize("version", [1, 2])
    def test_dialect_is_the_influx_dialect_setting(self, version: int) -> None:
        assert make_encoder(settings(version=version)).dialect == "influxdb"
        vm = settings(version=version, influx_dialect="victoriametrics")
        assert make_encoder(vm).dialect == "victoriametrics"

    def test_version_1_is_write_endpoint(self) -> None:
        assert isinstance(make_storage(settings(version=1)), InfluxV1Storage)

    def test_repr_names_target_and_no_secret(self) -> None:
        v2 = repr(make_storage(settings(version=2, token=TOKEN)))
        v1 = repr(make_storage(settings(version=1, username="luna", password=PASSWORD)))
        assert (
            v2 == "InfluxV2Storage(InfluxDB v2 at http://127.0.0.1:8086, bucket 'luna_monitoring')"
        )
        assert "database 'luna_monitoring'" in v1
        assert TOKEN not in v2 and PASSWORD not in v1 and BASIC not in v1


class TestInfluxV2:
    async def test_writes_lines_to_victoria_metrics(self, victoria: VictoriaMetrics) -> None:
        """Two lines written through influxdb-client arrive with their values and times."""
        name = unique_name("v2")
        body = f"{name},host=a x=1i 1700000000000000000\n{name},host=a x=2.5 1700000001000000000"
        await write(make_storage(settings(port=victoria.port, token=TOKEN)), body.encode())
        [series] = victoria.export(f'{{__name__="{name}_x"}}')
        assert series["metric"] == {"__name__": f"{name}_x", "host": "a"}
        assert series["values"] == [1, 2.5]
        assert series["timestamps"] == [1700000000000, 1700000001000]

    async def test_request_is_gzip_with_token_org_bucket_and_ns(self) -> None:
        with StubServer() as stub:
            config = {"port": stub.port, "token": TOKEN, "organization": "org", "bucket": "b"}
            await write(make_storage(settings(gzip=True, **config)), b"m x=1i 1\nm x=2i 2")
        [request] = stub.writes
        assert request.path == "/api/v2/write"
        assert dict(request.query) == {"org": "org", "bucket": "b", "precision": "ns"}
        assert request.headers["Authorization"] == f"Token {TOKEN}"
        assert request.content_encoding == "gzip"
        assert gzip.decompress(request.raw_body) == b"m x=1i 1\nm x=2i 2"

    async def test_error_status_message_and_retry_after(self) -> None:
        answer = StubResponse(429, b'{"code":"x","message":"slow down"}', {"Retry-After": "3"})
        with StubServer(answer) as stub:
            error = await failure(make_storage(settings(port=stub.port)))
        assert (error.status, error.message, error.retry_after_s) == (429, "slow down", 3.0)

    async def test_connection_refused_is_no_answer(self) -> None:
        error = await failure(make_storage(settings(port=free_port(), token=TOKEN)))
        assert error.status is None
        assert "Cannot connect" in error.message

    async def test_timeout_is_no_answer(self) -> None:
        with StubServer(StubResponse(delay=2)) as stub:
            storage = make_storage(settings(port=stub.port, write_timeout_s=0.2))
            began = time.monotonic()
            error = await failure(storage)
        assert time.monotonic() - began < 1.5
        assert (error.status, error.message) == (None, "no answer within 0.2 s")

    async def test_token_echoed_by_server_is_hidden(self) -> None:
        with StubServer(StubResponse(401, f'{{"message":"bad token {TOKEN}"}}'.encode())) as stub:
            error = await failure(make_storage(settings(port=stub.port, token=TOKEN)))
        assert (error.status, error.message) == (401, "bad token <hidden>")
        assert TOKEN not in str(error)


class TestInfluxV1:
    async def test_writes_lines_to_influxdb(self, influx_db: InfluxDatabase) -> None:
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        body = b'm,host=a x=1i,s="a b" 1700000000000000001\nm,host=b x=2i 1700000000000000002'
        await write(make_storage(settings(**config)), body)
        assert influx_db.query("SELECT * FROM m") == [
            {"time": 1700000000000000001, "host": "a", "s": "a b", "x": 1},
            {"time": 1700000000000000002, "host": "b", "s": None, "x": 2},
        ]

    async def test_retention_policy_is_used(self, influx_db: InfluxDatabase) -> None:
        influx_db.server.execute(
            f'CREATE RETENTION POLICY "week" ON "{influx_db.name}" DURATION 7d REPLICATION 1'
        )
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        storage = make_storage(settings(retention_policy="week", **config))
        await write(storage, f"m x=1i {time.time_ns()}".encode())
        assert len(influx_db.query('SELECT * FROM "week"."m"')) == 1
        assert influx_db.query("SELECT * FROM m") == []

    async def test_credentials_go_in_basic_auth_header_not_url(self) -> None:
        with StubServer() as stub:
            config = {"port": stub.port, "username": "luna", "password": PASSWORD, "gzip": True}
            await write(make_storage(settings(version=1, database="db", **config)), b"m x=1i 1")
        [request] = stub.writes
        assert request.path == "/write"
        assert dict(request.query) == {"db": "db", "precision": "ns"}
        assert request.headers["Authorization"] == f"Basic {BASIC}"
        assert request.content_encoding == "gzip"
        assert request.body == b"m x=1i 1"

    @pytest.mark.parametrize("version", [1, 2])
    async def test_loopback_bodies_are_sent_uncompressed(self, version: int) -> None:
        with StubServer() as stub:
            await write(make_storage(settings(version=version, port=stub.port)), b"m x=1i 1")
        [request] = stub.writes
        assert request.content_encoding in (None, "identity")
        assert request.raw_body == b"m x=1i 1"

    async def test_no_credentials_no_auth_header(self) -> None:
        with StubServer() as stub:
            await write(make_storage(settings(version=1, port=stub.port)), b"m x=1i 1")
        assert "Authorization" not in stub.writes[0].headers

    async def test_missing_database_is_404(self, influx_db: InfluxDatabase) -> None:
        config = {"version": 1, "port": influx_db.server.port, "database": unique_name("no")}
        error = await failure(make_storage(settings(**config)))
        assert error.status == 404
        assert error.message.startswith("database not found")

    async def test_type_conflict_is_400_partial_write(self, influx_db: InfluxDatabase) -> None:
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        await write(make_storage(settings(**config)), b"m x=1i 1")
        body = b'm x="s" 2\nm x=3i 3'
        error = await failure(make_storage(settings(**config)), body)
        assert error.status == 400
        assert error.message.startswith("partial write: field type conflict")
        assert error.message.endswith("dropped=1")
        assert influx_db.count("m") == 2

    async def test_password_echoed_by_server_is_hidden(self) -> None:
        echo = f'{{"error":"no user for {PASSWORD} / {BASIC}"}}'.encode()
        with StubServer(StubResponse(401, echo)) as stub:
            config = {"port": stub.port, "username": "luna", "password": PASSWORD}
            error = await failure(make_storage(settings(version=1, **config)))
        assert error.message == "no user for <hidden> / <hidden>"

    async def test_dropped_connection_is_no_answer(self) -> None:
        with StubServer(StubResponse(drop=True)) as stub:
            error = await failure(make_storage(settings(version=1, port=stub.port)))
        assert error.status is None
        assert error.message == "ServerDisconnectedError: Server disconnected"


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert parse_retry_after("7") == 7.0

    def test_fraction(self) -> None:
        assert parse_retry_after(" 0.5 ") == 0.5

    def test_http_date(self) -> None:
        now = 1_800_000_000.0
        assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0

    def test_past_date_is_zero(self) -> None:
        now = 1_800_000_000.0
        assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf"])
    def test_unusable_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value) is None


class TestServerMessage:
    def test_v2_json_message(self) -> None:
        assert server_message(b'{"code":"invalid","message":"bad line"}') == "bad line"

    def test_v1_json_error(self) -> None:
        assert server_message(b'{"error":"database not found"}\n') == "database not found"

    def test_plain_text_whitespace_collapsed(self) -> None:
        assert server_message(b"<html>\n  busy\n</html>") == "<html> busy </html>"

    def test_long_message_cut_in_the_middle(self) -> None:
        message = server_message(b"a" * 500 + b" dropped=7")
        assert message == "a" * 200 + " ... " + "a" * 85 + " dropped=7"
        assert len(message) == 300

    def test_empty(self) -> None:
        assert server_message(b"") == ""


def test_redactor_hides_every_secret_and_ignores_empty() -> None:
    redact = redactor("abc", "", "abcdef")
    assert redact("abcdef and abc") == "<hidden> and <hidden>"


class TestUrl:
    """``url``: an InfluxDB behind a reverse proxy under a path prefix, over IPv6."""

    async def test_v1_through_a_prefix_on_ipv6(self, influx_db: InfluxDatabase) -> None:
        """``url: http://[::1]:PORT/influx`` writes via ``/influx/write`` into InfluxDB 1.x."""
        with ReverseProxy(influx_db.server.url, "/influx") as proxy:
            config = {"version": 1, "url": proxy.url, "database": influx_db.name}
            await write(make_storage(settings(**config)), b"m x=1i 1700000000000000001")
        assert proxy.paths == ["/influx/write"]
        assert influx_db.query("SELECT * FROM m") == [{"time": 1700000000000000001, "x": 1}]

    async def test_v2_through_a_prefix_on_ipv6(self, victoria: VictoriaMetrics) -> None:
        """influxdb-client keeps the prefix: ``/vm/api/v2/write`` reaches VictoriaMetrics."""
        name = unique_name("url")
        with ReverseProxy(victoria.url, "/vm") as proxy:
            storage = make_storage(settings(url=proxy.url + "/", gzip=True))
            await write(storage, f"{name},host=a x=7i 1700000000000000000".encode())
        assert proxy.paths == ["/vm/api/v2/write"]
        [series] = victoria.export(f'{{__name__="{name}_x"}}')
        assert series["values"] == [7]

    async def test_ipv6_host_key(self, influx_db: InfluxDatabase) -> None:
        """``host: "::1"`` (no brackets) works: the URL is built as ``http://[::1]:PORT``."""
        with ReverseProxy(influx_db.server.url, "") as proxy:
            config = {"version": 1, "host": "::1", "port": proxy.port, "database": influx_db.name}
            await write(make_storage(settings(**config)), b"m y=2i 1700000000000000002")
        assert influx_db.query("SELECT y FROM m") == [{"time": 1700000000000000002, "y": 2}]


def test_root_logger_untouched_by_every_failure_mode(influx_db: InfluxDatabase) -> None:
    """No failure of either storage configures logging: the root logger keeps no handler.

    influxdb-client logs a non-JSON error body with ``logging.debug`` on the root logger,
    which would install Python's default handler (every Sanic line then printed twice).
    Each mode is a real server's answer, run in a fresh process (pytest owns the root
    logger of this one).
    """
    server = influx_db.server
    v1 = {"version": 1, "port": server.port, "database": influx_db.name, "write_timeout_s": 1}
    too_long = "m,t=" + "a" * 300_000 + " x=1i 1"
    with (
        VictoriaMetricsWithAuth() as guarded,
        ReverseProxy(f"http://127.0.0.1:{free_port()}", "", host="127.0.0.1") as dead,
        socket.create_server(("127.0.0.1", 0)) as black_hole,  # listens, never answers
        VictoriaMetrics() as victoria,
    ):
        silent = {"port": black_hole.getsockname()[1], "write_timeout_s": 0.5}
        cases = [
            ({**v1, "port": guarded.port, "username": "luna", "password": "wrong"}, "m x=1i 1"),
            ({**v1, "database": "missing"}, "m x=1i 1"),
            ({**v1, "retention_policy": "missing"}, "m x=1i 1"),
            ({**v1, "port": free_port()}, "m x=1i 1"),
            ({**v1, **silent}, "m x=1i 1"),
            (v1, "m x=oops 1"),
            ({"port": guarded.port, "token": "luna:wrong"}, "m x=1i 1"),
            ({"port": server.port}, "m x=1i 1"),
            ({"port": dead.port}, "m x=1i 1"),
            ({"port": free_port()}, "m x=1i 1"),
            (silent, "m x=1i 1"),
            ({"port": victoria.port}, too_long),
        ]
        done = subprocess.run(
            [sys.executable, str(APPS / "failure_modes.py")],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    report = json.loads(done.stdout)
    assert report["statuses"] == [401, 404, 500, None, None, 400, 401, 404, 500, None, None, 400]
    assert report["root_handlers"] == 0
