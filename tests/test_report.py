"""``python -m luna_monitoring report``, run as a user runs it, against real InfluxDB 1.x."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from chromium import inspect, screenshot
from PIL import Image
from servers import free_port, unique_name
from stub_server import StubResponse, StubServer

from example_app.demo import DATABASE
from luna_monitoring.core.point import LineEncoder, Point, join_lines
from luna_monitoring.report.page import SECTIONS, duration

ROOT = Path(__file__).resolve().parent.parent
CHARTS = 11
"""Charts of a range where every series has points."""
_IMG = re.compile(r'<img src="([^"]*)" alt="([^"]*)">')


def report(
    *args: str, runner: tuple[str, ...] = ("-m", "luna_monitoring")
) -> subprocess.CompletedProcess[str]:
    """``python -m luna_monitoring report ARGS`` with no ``LUNA_MONITORING_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNA_MONITORING_")}
    return subprocess.run(
        [sys.executable, *runner, "report", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def config_file(tmp_path: Path, **monitoring: object) -> str:
    """A JSON config file holding ``monitoring``."""
    path = tmp_path / f"{unique_name('config')}.json"
    path.write_text(json.dumps(monitoring))
    return str(path)


def assert_fails(done: subprocess.CompletedProcess[str], line: str) -> None:
    """Exit 1, nothing on stdout, exactly ``line`` on stderr, no traceback."""
    assert (done.returncode, done.stdout, done.stderr) == (1, "", line + "\n")


def tiles(page: str) -> dict[str, str]:
    """The summary's values by tile id (``requests``, ``errors``, ``p50``, ...)."""
    return dict(re.findall(r'id="total-([\w-]+)"><span>[^<]*</span><b>([^<]*)</b>', page))


def table_rows(page: str, section: str) -> list[list[str]]:
    """The body rows of the first table of ``section``, cells as text."""
    body = re.search(rf'<section id="{section}">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    assert body is not None, section
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body[1].split("</tr>") if row]


@pytest.fixture(scope="module")
def demo_report(demo_traffic, tmp_path_factory):
    """The report of the demo's traffic: ``(page text, finished process, influx, path)``."""
    influx, _ = demo_traffic
    tmp = tmp_path_factory.mktemp("report")
    config = config_file(tmp, version=1, port=influx.port, database=DATABASE)
    out = tmp / "report.html"
    done = report(config, "--since", "1h", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text(encoding="utf-8"), done, influx, out


def influx_counts(influx, q: str) -> dict[tuple[str, ...], int]:
    """``{tag values: count}`` of a ``SELECT COUNT(...) ... GROUP BY`` query."""
    return {
        tuple(series.get("tags", {}).values()): series["values"][0][1]
        for series in influx.query(q, DATABASE)
    }


class TestDemoReport:
    def test_one_line_names_the_file_and_totals(self, demo_report, demo_traffic):
        """Exit 0 and one line: the file written, the requests and errors counted."""
        _, done, _, out = demo_report
        calls = demo_traffic[1].calls
        failing = sum(call.expected >= 400 for call in calls)
        assert done.stderr == ""
        assert done.stdout.startswith(
            f"OK: wrote {out}: {len(calls)} requests, {failing} errors "
            f"({failing / len(calls):.1%}) of service 'luna-remote-sdk', "
        )
        assert done.stdout.count("\n") == 1

    def test_every_section_has_content(self, demo_report):
        """Every section is there with its title, and none says it has no data."""
        page = demo_report[0]
        found = re.findall(r'<section id="([\w-]+)"><h[12]>([^<]*)</h[12]>', page)
        assert [key for key, _ in found] == [key for key, _ in SECTIONS]
        assert [title for _, title in found][1:] == [title for _, title in SECTIONS][1:]
        assert 'class="empty"' not in page

    def test_totals_equal_counts_read_from_influxdb(self, demo_report):
        """Requests, errors, p50/p99 and the worst route equal what InfluxDB answers."""
        page, _, influx, _ = demo_report
        requests = influx_counts(influx, 'SELECT COUNT("request_id") FROM "requests"')[()]
        errors = influx_counts(influx, 'SELECT COUNT("request_id") FROM "errors"')[()]
        p50, p99 = influx.query(
            'SELECT PERCENTILE("execution_time", 50), PERCENTILE("execution_time", 99) '
            'FROM "requests"',
            DATABASE,
        )[0]["values"][0][1:]
        by_route = influx_counts(influx, 'SELECT COUNT("request_id") FROM "errors" GROUP BY route')
        worst = max(by_route, key=by_route.get)[0]
        assert tiles(page) == {
            "requests": f"{requests:,}",
            "errors": f"{errors:,}",
            "p50": duration(p50),
            "p99": duration(p99),
            "worst-route": worst,
        }
        assert (requests, errors) == (200, 25)

    def test_route_table_equals_influxdb(self, demo_report):
        """Per route: requests and errors as InfluxDB counts them, worst first."""
        page, _, influx, _ = demo_report
        requests = influx_counts(
            influx, 'SELECT COUNT("request_id") FROM "requests" GROUP BY route'
        )
        errors = influx_counts(influx, 'SELECT COUNT("request_id") FROM "errors" GROUP BY route')
        rows = table_rows(page, "routes")
        assert {row[0]: (row[1], row[2]) for row in rows} == {
            route: (str(n), str(errors.get((route,), 0))) for (route,), n in requests.items()
        }
        assert [int(row[2]) for row in rows] == sorted((int(row[2]) for row in rows), reverse=True)

    def test_error_table_equals_influxdb(self, demo_report):
        """The ranked error table: status_code, error_code, route and count as stored."""
        page, _, influx, _ = demo_report
        stored = influx_counts(
            influx,
            'SELECT COUNT("request_id") FROM "errors" GROUP BY status_code, error_code, route',
        )
        rows = table_rows(page, "errors")
        assert {(s, c, r): int(n) for s, c, r, n, _ in rows} == {
            (tags[2], tags[0], tags[1]): n for tags, n in stored.items()
        }
        assert [int(row[3]) for row in rows] == sorted((int(row[3]) for row in rows), reverse=True)

    def test_usage_and_licensing_counts(self, demo_report):
        """The licensing table counts reports per status as InfluxDB does."""
        page, _, influx, _ = demo_report
        stored = influx_counts(
            influx, 'SELECT COUNT("liveness_balance") FROM "licensing" GROUP BY license_status'
        )
        rows = table_rows(page, "licensing")
        assert {row[0]: int(row[1]) for row in rows} == {tags[0]: n for tags, n in stored.items()}

    def test_images_are_embedded_pngs(self, demo_report):
        """Every chart is a PNG inside the page; nothing is loaded from anywhere else."""
        page = demo_report[0]
        images = _IMG.findall(page)
        assert len(images) == CHARTS == page.count("<img ")
        for src, alt in images:
            assert src.startswith("data:image/png;base64,"), alt
            png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            assert png.format == "PNG" and png.width >= 900 and png.height >= 200, alt
        for external in ("http:", "https:", "<link", "<script", "url(", "@import"):
            assert external not in page

    def test_opens_in_chromium(self, demo_report, tmp_path):
        """Headless Chromium: no console or page errors, every chart decoded and drawn with a
        non-zero size; a screenshot is taken."""
        out = demo_report[3]
        shown = inspect(out, width=1100)
        assert shown["errors"] == [] and shown["console"] == []
        assert len(shown["images"]) == CHARTS
        for image in shown["images"]:
            assert min(image["natural"]) > 0 and min(image["rendered"]) > 0, image
            assert image["rendered"][0] <= 1100, image
        shot = tmp_path / "report.png"
        screenshot(out, shot, 1100, 2400)
        with Image.open(shot) as picture:
            assert picture.size == (1100, 2400)
            colors = picture.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colors is not None and len(colors) > 100  # drawn, not a blank page

    def test_probe_sees_a_broken_page(self, tmp_path):
        """The Chromium check can fail: a broken image and a console error are reported."""
        broken = tmp_path / "broken.html"
        broken.write_text(
            '<!DOCTYPE html><html><head></head><body><img src="data:image/png;base64,AAAA" '
            'alt="x"><script>console.error("boom")</script></body></html>'
        )
        shown = inspect(broken)
        assert "boom" in shown["errors"] and len(shown["console"]) == 1
        assert shown["images"][0]["natural"] == [0, 0]


class TestBadInput:
    def test_clickhouse_config(self, tmp_path):
        """A ClickHouse config: one line saying the report reads InfluxDB only."""
        config = config_file(tmp_path, storage_type="clickhouse", port=free_port())
        done = report(config, "--out", str(tmp_path / "r.html"))
        assert_fails(
            done,
            "FAIL: the report reads InfluxDB (InfluxQL); storage_type is 'clickhouse': "
            "query ClickHouse with the README's SQL instead",
        )
        assert not (tmp_path / "r.html").exists()

    def test_unreachable_database(self, tmp_path):
        """A closed port: one line naming the URL and what to check; the password stays out."""
        port = free_port()
        config = config_file(tmp_path, version=1, port=port, username="u", password="pa55-w0rd")
        done = report(config, "--out", str(tmp_path / "r.html"))
        assert_fails(
            done,
            f"FAIL: cannot reach http://127.0.0.1:{port}: Connection refused "
            "(check host, port and use_ssl)",
        )
        assert not (tmp_path / "r.html").exists()

    def test_range_without_data(self, demo_traffic, tmp_path):
        """A range before the traffic: one line naming the range and what to do."""
        config = config_file(tmp_path, version=1, port=demo_traffic[0].port, database=DATABASE)
        out = tmp_path / "r.html"
        done = report(
            config,
            "--start",
            "2001-01-01T00:00:00Z",
            "--end",
            "2001-01-01T01:00",
            "--out",
            str(out),
        )
        assert_fails(
            done,
            "FAIL: no requests of service 'luna-remote-sdk' in 'luna_monitoring' from "
            "2001-01-01 00:00:00 to 01:00:00 UTC; pick a range with traffic "
            "(--since 1d, or --start/--end)",
        )
        assert not out.exists()

    def test_other_service_named(self, demo_traffic, tmp_path):
        """A service without data in the range: the line lists the services that have some."""
        config = config_file(tmp_path, version=1, port=demo_traffic[0].port, database=DATABASE)
        done = report(config, "--service", 'it\'s "other"', "--out", str(tmp_path / "r.html"))
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("FAIL: no requests of service 'it\\'s \"other\"' in ")
        assert done.stderr.endswith(
            "; services with requests then: 'luna-remote-sdk' (use --service)\n"
        )

    def test_database_that_does_not_exist(self, demo_traffic, tmp_path):
        """One line naming the database and the config keys to check."""
        port = demo_traffic[0].port
        config = config_file(tmp_path, version=1, port=port, database="no_such_db")
        assert_fails(
            report(config, "--out", str(tmp_path / "r.html")),
            f"FAIL: database 'no_such_db' not found at http://127.0.0.1:{port}: check "
            "`database` and `retention_policy` in the config",
        )

    def test_bucket_that_is_not_mapped(self, demo_traffic, tmp_path):
        """A v2 config reads its bucket through /query; a missing one names the DBRP fix."""
        port = demo_traffic[0].port
        config = config_file(tmp_path, version=2, port=port, bucket="nope", token="t0ken-s3cret")
        assert_fails(
            report(config, "--out", str(tmp_path / "r.html")),
            f"FAIL: bucket 'nope' not found at http://127.0.0.1:{port}: map the bucket to a "
            "database with a DBRP mapping (see the README)",
        )

    @pytest.mark.parametrize("since", ["1x", "0h", "-5m", "h", "1 hour", "99999d", ""])
    def test_invalid_since(self, since, tmp_path):
        """Checked before anything is read: one line with the accepted form."""
        assert_fails(
            report(f"--since={since}", "--out", str(tmp_path / "r.html")),
            f"FAIL: invalid --since {since!r}: use a number and a unit s, m, h, d or w "
            "(e.g. 30m, 1h, 2d), at most 3650d",
        )

    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (
                ("--start", "yesterday"),
                "FAIL: invalid --start 'yesterday': use ISO 8601 (2026-01-31T08:00:00Z) "
                "or unix seconds",
            ),
            (
                ("--start", "2026-01-02", "--end", "2026-01-01"),
                "FAIL: --end (2026-01-01) must be after the start of the range",
            ),
            (
                ("--since", "1h", "--start", "2026-01-01"),
                "FAIL: give either --since or --start/--end, not both",
            ),
        ],
    )
    def test_invalid_range(self, args, line, tmp_path):
        """Bad --start/--end combinations: one line each."""
        assert_fails(report(*args, "--out", str(tmp_path / "r.html")), line)

    @pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
    def test_invalid_timeout(self, timeout, tmp_path):
        """A timeout that is not a positive number of seconds: one line."""
        assert_fails(
            report(f"--timeout={timeout}", "--out", str(tmp_path / "r.html")),
            f"FAIL: --timeout must be a positive number of seconds, not {float(timeout):g}",
        )

    def test_config_file_not_json(self, tmp_path):
        """The config is read as ``check`` reads it, with the same one-line errors."""
        path = tmp_path / "monitoring.json"
        path.write_text("{not json")
        done = report(str(path), "--out", str(tmp_path / "r.html"))
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(f"FAIL: config file {str(path)!r} is not valid JSON: ")
        assert done.stderr.count("\n") == 1

    def test_output_directory_missing(self, demo_traffic, tmp_path):
        """An --out in a directory that does not exist: one line, before any query."""
        config = config_file(tmp_path, version=1, port=demo_traffic[0].port, database=DATABASE)
        out = tmp_path / "missing" / "r.html"
        assert_fails(
            report(config, "--out", str(out)),
            f"FAIL: cannot write {str(out)!r}: no directory {str(out.parent)!r}",
        )

    def test_without_the_report_extra(self, tmp_path):
        """Without matplotlib: one line naming the extra; exit 2."""
        done = report(
            "--out",
            str(tmp_path / "r.html"),
            runner=(
                "-c",
                "import sys; sys.modules['matplotlib'] = None; "
                "from luna_monitoring.cli import main; sys.exit(main())",
            ),
        )
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (
            "FAIL: the report needs matplotlib: pip install 'luna-monitoring[report]'\n"
        )


class TestAnswersNoRealServerGives:
    """Answers of an InfluxDB with authentication, a hung server and a server that is not
    InfluxDB, from the stub; secrets never appear in the line."""

    TOKEN, PASSWORD = "t0ken-s3cret", "pa55-w0rd"

    @pytest.mark.parametrize(
        ("version", "auth", "line"),
        [
            (2, "Token t0ken-s3cret", "authentication failed (401) at {url}: check the token"),
            (
                1,
                "Basic dTpwYTU1LXcwcmQ=",
                "authentication failed (401) at {url}: check username/password",
            ),
        ],
    )
    def test_authentication_failed(self, version, auth, line, tmp_path):
        """401: one line naming the credentials to check; they were sent as a header."""
        body = json.dumps({"error": f"authorization failed {self.TOKEN} {self.PASSWORD}"})
        with StubServer(StubResponse(401, body.encode())) as stub:
            config = config_file(
                tmp_path,
                version=version,
                port=stub.port,
                token=self.TOKEN,
                username="u",
                password=self.PASSWORD,
            )
            done = report(config, "--out", str(tmp_path / "r.html"))
            (request,) = stub.wait_for_requests(1)
        assert_fails(done, "FAIL: " + line.format(url=f"http://127.0.0.1:{stub.port}"))
        assert (request.path, request.headers["Authorization"]) == ("/query", auth)
        assert self.TOKEN not in request.path + str(request.query)

    def test_no_answer_within_the_timeout(self, tmp_path):
        """A server that does not answer: the line names the timeout."""
        with StubServer(StubResponse(200, b"{}", delay=5)) as stub:
            config = config_file(tmp_path, version=1, port=stub.port)
            done = report(config, "--timeout", "0.5", "--out", str(tmp_path / "r.html"))
        assert_fails(done, f"FAIL: no answer from http://127.0.0.1:{stub.port} within 0.5 s")

    def test_not_influxdb(self, tmp_path):
        """A web server that answers HTML: the line asks whether this is InfluxDB."""
        with StubServer(StubResponse(200, b"<html>hello</html>")) as stub:
            config = config_file(tmp_path, version=1, port=stub.port)
            done = report(config, "--out", str(tmp_path / "r.html"))
        url = f"http://127.0.0.1:{stub.port}"
        assert_fails(done, f"FAIL: the answer of {url}/query is not JSON: is this InfluxDB?")

    def test_server_error_message_without_secrets(self, tmp_path):
        """Another status: the server's message, with the secrets it echoes hidden."""
        body = json.dumps({"error": f"boom {self.TOKEN} {self.PASSWORD}"})
        with StubServer(StubResponse(500, body.encode())) as stub:
            config = config_file(
                tmp_path, version=1, port=stub.port, token=self.TOKEN, password=self.PASSWORD
            )
            done = report(config, "--out", str(tmp_path / "r.html"))
        assert_fails(done, "FAIL: InfluxDB answered 500: boom <hidden> <hidden>")


class TestHostileData:
    SERVICE = "svc 'quoted' \"double\" ünï, x=1 $a$"
    ROUTE = "GET:/<script>alert(1)</script>/$x$/&amp;/ü"

    def test_escaped_and_empty_sections_say_so(self, influx_db, tmp_path):
        """Tag values with markup, quotes and ``$`` come out escaped, as text; a range with
        only requests says so in one line per other section."""
        now = 1_700_000_000_000_000_000
        tags = {"service": self.SERVICE, "route": self.ROUTE, "status_code": "500"}
        points = [
            Point(
                "requests",
                now + i * 1_000_000_000,
                tags,
                {"request_id": "r", "execution_time": 0.25},
            )
            for i in range(3)
        ] + [
            Point("errors", now, {**tags, "error_code": "<i>e</i>"}, {"request_id": "r"}),
        ]
        assert influx_db.write_lines(join_lines(LineEncoder().encode_lines(points))).status == 204
        config = config_file(
            tmp_path, version=1, port=influx_db.server.port, database=influx_db.name
        )
        out = tmp_path / "r.html"
        done = report(
            config,
            "--service",
            self.SERVICE,
            "--start",
            "2023-11-14T22:00:00Z",
            "--end",
            "2023-11-14T23:00:00Z",
            "--out",
            str(out),
        )
        assert done.returncode == 0, done.stderr
        page = out.read_text(encoding="utf-8")
        assert "<script>" not in page and "<i>e</i>" not in page
        assert (
            tiles(page)["worst-route"]
            == "GET:/&lt;script&gt;alert(1)&lt;/script&gt;/$x$/&amp;amp;/ü"
        )
        assert table_rows(page, "errors")[0][:3] == [
            "500",
            "&lt;i&gt;e&lt;/i&gt;",
            tiles(page)["worst-route"],
        ]
        empty = re.findall(
            r'<section id="([\w-]+)"><h2>[^<]*</h2><p class="empty">([^<]*)</p></section>', page
        )
        assert empty == [
            ("estimators", "No estimator points in this range."),
            ("image-load", "No image_load points in this range."),
            ("sdkloop", "No sdkloop_task points in this range."),
            ("usage", "No usages_statistic points in this range."),
            ("licensing", "No licensing points (no licence warnings or errors) in this range."),
        ]
        assert len(_IMG.findall(page)) == 3  # latency, request rate, errors
