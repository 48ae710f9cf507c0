"""``run_check``: one point written with a config, or one line saying what is wrong."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import VictoriaMetricsWithAuth, free_port, unique_name
from stub_server import StubResponse, StubServer

from luna_monitoring.cli.check import CHECK_SERIES, run_check

TOKEN = "s3cr3t-t0ken"
PASSWORD = "pa55-w0rd"


@pytest.fixture
def check_file(tmp_path: Path) -> Callable[..., tuple[bool, str]]:
    """``check_file(dry_run_only=False, timeout_s=None, **monitoring)`` -> ``run_check`` of
    a JSON file holding that config."""

    def run(
        dry_run_only: bool = False, timeout_s: float | None = None, **monitoring: object
    ) -> tuple[bool, str]:
        path = tmp_path / "monitoring.json"
        path.write_text(json.dumps(monitoring))
        return run_check(str(path), dry_run_only=dry_run_only, timeout_s=timeout_s)

    return run


def _stub_config(stub: StubServer, version: int) -> dict:
    secrets = {"token": TOKEN, "username": "u", "password": PASSWORD}
    return {"version": version, "port": stub.port, "bucket": "b", "database": "d", **secrets}


class TestSuccess:
    def test_v1_writes_one_point(self, check_file, influx_db):
        """InfluxDB 1.x: OK line, and exactly one check point is stored with its tag and field."""
        ok, line = check_file(version=1, port=influx_db.server.port, database=influx_db.name)
        assert (ok, line) == (
            True,
            f"OK: wrote 1 point ({CHECK_SERIES}) to InfluxDB v1 at "
            f"http://127.0.0.1:{influx_db.server.port}, database '{influx_db.name}'",
        )
        rows = influx_db.query(f'SELECT * FROM "{CHECK_SERIES}"')
        assert [(row["service"], row["ok"]) for row in rows] == [("luna-remote-sdk", 1)]

    def test_v2_writes_one_point(self, check_file, victoria):
        """The v2 write API (VictoriaMetrics here): OK line and the point is stored."""
        service = unique_name("svc")
        ok, line = check_file(version=2, port=victoria.port, token=TOKEN, service=service)
        assert (ok, line) == (
            True,
            f"OK: wrote 1 point ({CHECK_SERIES}) to InfluxDB v2 at "
            f"http://127.0.0.1:{victoria.port}, bucket 'luna_monitoring'",
        )
        stored = victoria.export(f'{CHECK_SERIES}_ok{{service="{service}"}}')
        assert [series["values"] for series in stored] == [[1]]

    def test_file_with_a_monitoring_key(self, tmp_path, influx_db):
        """A file holding ``{"MONITORING": {...}}`` works as well."""
        path = tmp_path / "app.json"
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        path.write_text(json.dumps({"MONITORING": config}))
        assert run_check(str(path))[0] is True
        assert influx_db.count(CHECK_SERIES) == 1

    def test_environment(self, influx_db):
        """Without a file the LUNA_MONITORING_* variables are the config."""
        environ = {
            "LUNA_MONITORING_VERSION": "1",
            "LUNA_MONITORING_PORT": str(influx_db.server.port),
            "LUNA_MONITORING_DATABASE": influx_db.name,
        }
        ok, line = run_check(None, environ)
        assert ok, line
        assert influx_db.count(CHECK_SERIES) == 1


class TestServerFailures:
    def test_missing_database(self, check_file, influxdb):
        """v1: a database that does not exist is named."""
        ok, line = check_file(version=1, port=influxdb.port, database="no_such_db")
        assert (ok, line) == (
            False,
            "FAIL: database 'no_such_db' not found (404): create it first",
        )

    def test_v2_against_old_influxdb(self, check_file, influxdb):
        """v2 against an InfluxDB 1.x without /api/v2/write says to use version 1."""
        ok, line = check_file(version=2, port=influxdb.port, token=TOKEN)
        assert (ok, line) == (
            False,
            f"FAIL: no /api/v2/write at http://127.0.0.1:{influxdb.port} (404): "
            "for InfluxDB 1.x before 1.8 use version 1",
        )

    def test_unreachable(self, check_file):
        """Nothing listening: the URL is named."""
        port = free_port()
        ok, line = check_file(version=2, port=port, token=TOKEN)
        assert not ok
        assert line.startswith(f"FAIL: cannot reach http://127.0.0.1:{port}: ")
        assert TOKEN not in line

    def test_timeout(self, check_file):
        """A server that does not answer within write_timeout_s."""
        with StubServer(StubResponse(204, delay=3)) as stub:
            ok, line = check_file(**_stub_config(stub, 1), write_timeout_s=0.3)
        assert (ok, line) == (
            False,
            f"FAIL: cannot reach http://127.0.0.1:{stub.port}: no answer within 0.3 s",
        )

    @pytest.mark.parametrize(
        ("version", "status", "expected"),
        [
            (2, 401, "FAIL: authentication failed (401): check the token"),
            (1, 401, "FAIL: authentication failed (401): check the username/password"),
            (2, 403, "FAIL: not allowed to write (403) to bucket 'b'"),
            (1, 403, "FAIL: not allowed to write (403) to database 'd'"),
            (
                2,
                404,
                "FAIL: bucket 'b' or organization '' not found (404): create the bucket, "
                "check the organization",
            ),
            (2, 500, 'FAIL: InfluxDB answered 500: bucket "b" not found'),
        ],
    )
    def test_http_status(self, check_file, version, status, expected):
        """Each status gets its own explanation; secrets never appear."""
        body = json.dumps({"code": "x", "message": f'bucket "b" not found {TOKEN} {PASSWORD}'})
        with StubServer(StubResponse(status, body.encode())) as stub:
            ok, line = check_file(**_stub_config(stub, version))
        assert not ok
        assert line.replace(" <hidden>", "") == expected
        assert TOKEN not in line and PASSWORD not in line


class TestConfigFailures:
    def test_unknown_key(self, check_file):
        """A config error is shown as the settings word it."""
        ok, line = check_file(hots="x")
        assert not ok
        assert line.startswith("FAIL: bad config: MONITORING: unknown key(s) 'hots'; known keys: ")

    def test_wrong_type_hides_secret(self, check_file):
        """A secret of the wrong type is not shown."""
        assert check_file(token=12345) == (
            False,
            "FAIL: bad config: MONITORING['token']: expected str, got <hidden>",
        )

    def test_missing_file(self, tmp_path):
        """A file that is not there."""
        path = tmp_path / "nope.json"
        assert run_check(str(path)) == (
            False,
            f"FAIL: cannot read config file '{path}': No such file or directory",
        )

    def test_invalid_json(self, tmp_path):
        """A file that is not JSON."""
        path = tmp_path / "bad.json"
        path.write_text("{version: 1")
        ok, line = run_check(str(path))
        assert not ok
        assert line.startswith(f"FAIL: config file '{path}' is not valid JSON: ")

    def test_bad_environment(self):
        """A bad variable is named."""
        assert run_check(None, {"LUNA_MONITORING_PORT": "eighty"}) == (
            False,
            "FAIL: bad config: LUNA_MONITORING_PORT: expected an integer, got 'eighty'",
        )


class TestDryRun:
    """``--dry-run``: reach the server and have the credentials accepted; write nothing."""

    def test_v1_names_database_and_retention_policy_and_writes_nothing(self, check_file, influx_db):
        influx_db.server.execute(
            f'CREATE RETENTION POLICY "week" ON "{influx_db.name}" DURATION 7d REPLICATION 1'
        )
        config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        ok, line = check_file(dry_run_only=True, retention_policy="week", **config)
        assert (ok, line) == (
            True,
            f"OK: reached InfluxDB v1 at http://127.0.0.1:{influx_db.server.port}, database "
            f"'{influx_db.name}' (InfluxDB 1.6.7~rc0): credentials accepted, database "
            f"'{influx_db.name}' with retention policy 'week' exists; nothing written",
        )
        assert influx_db.query("SHOW MEASUREMENTS") == []

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            ({"database": "nope"}, "database 'nope' not found (404): create it first"),
            (
                {"retention_policy": "nope"},
                "retention policy 'nope' not found on database '{db}' (500): create it, or "
                "leave retention_policy empty",
            ),
        ],
    )
    def test_v1_missing_database_or_retention_policy(self, check_file, influx_db, config, expected):
        base = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
        ok, line = check_file(dry_run_only=True, **(base | config))
        assert (ok, line) == (False, "FAIL: " + expected.format(db=influx_db.name))

    def test_v2_against_influxdb_before_1_8(self, check_file, influxdb):
        ok, line = check_file(dry_run_only=True, port=influxdb.port, token=TOKEN)
        assert (ok, line) == (
            False,
            f"FAIL: no /api/v2/write at http://127.0.0.1:{influxdb.port} (404): "
            "for InfluxDB 1.x before 1.8 use version 1",
        )

    def test_v2_without_a_bucket_api_is_reached_only(self, check_file, victoria):
        service = unique_name("dry")
        ok, line = check_file(dry_run_only=True, port=victoria.port, service=service)
        assert (ok, line) == (
            True,
            f"OK: reached InfluxDB v2 at http://127.0.0.1:{victoria.port}, bucket "
            "'luna_monitoring': it has no bucket API (VictoriaMetrics, InfluxDB 1.8), so token "
            "and bucket are not checked; nothing written (check without --dry-run writes one "
            "point)",
        )
        assert victoria.export(f'{{service="{service}"}}') == []

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            (
                {"version": 1, "username": "luna", "password": PASSWORD},
                "authentication failed (401): check the username/password",
            ),
            ({"version": 2, "token": TOKEN}, "authentication failed (401): check the token"),
        ],
    )
    def test_refused_credentials(self, check_file, config, expected):
        with VictoriaMetricsWithAuth() as guarded:
            ok, line = check_file(dry_run_only=True, port=guarded.port, **config)
        assert (ok, line) == (False, "FAIL: " + expected)

    def test_unreachable(self, check_file):
        port = free_port()
        ok, line = check_file(dry_run_only=True, version=1, port=port, password=PASSWORD)
        assert not ok and line.startswith(f"FAIL: cannot reach http://127.0.0.1:{port}: ")
        assert PASSWORD not in line


class TestTimeout:
    @pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "write"])
    def test_timeout_bounds_a_black_hole(self, check_file, dry):
        """``--timeout 0.3`` instead of write_timeout_s (10 s) against a silent server."""
        with socket.create_server(("127.0.0.1", 0)) as black_hole:
            port = black_hole.getsockname()[1]
            began = time.monotonic()
            ok, line = check_file(dry_run_only=dry, timeout_s=0.3, version=1, port=port)
            elapsed = time.monotonic() - began
        assert (ok, line) == (
            False,
            f"FAIL: cannot reach http://127.0.0.1:{port}: no answer within 0.3 s",
        )
        assert elapsed < 2
