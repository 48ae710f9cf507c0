"""``make demo`` (and ``make demo FRAMEWORK=aiohttp``): ``python -m example_app.demo`` run end
to end as a user runs it, on each framework."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from example_app.demo import FAILING_PER_KIND, OK_PER_KIND, REPORT_PATH
from luna_monitoring.core.schema import SERIES
from luna_monitoring.dashboards import dashboard_dir, dashboard_names
from luna_monitoring.report.page import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
SENT = 7 * OK_PER_KIND + 5 * FAILING_PER_KIND
FAILING = 5 * FAILING_PER_KIND


@pytest.fixture(scope="module", params=["sanic", "aiohttp"])
def demo(request: pytest.FixtureRequest) -> subprocess.CompletedProcess[str]:
    """The demo's run on each framework (once for this module), bounded by the 2 minutes it
    promises."""
    return subprocess.run(
        [sys.executable, "-m", "example_app.demo", "--framework", request.param],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exits_zero(demo):
    """Every check of the demo passes."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "BAD" not in demo.stdout
    framework = demo.args[-1]
    assert f"example_app on {framework} at http://127.0.0.1:" in demo.stdout


def test_every_series_has_points(demo):
    """The table lists all 44 series, each with a count > 0 and a sample point."""
    rows = dict(re.findall(r"^(\w+) +(\d+)  \S", demo.stdout, re.MULTILINE))
    assert list(rows) == list(SERIES)
    assert all(int(count) > 0 for count in rows.values()), rows
    assert (int(rows["requests"]), int(rows["errors"])) == (SENT, FAILING)


def test_checks_name_the_counts(demo):
    """The check lines say what was compared, with the numbers."""
    assert f"ok  requests: {SENT} points for {SENT} requests sent\n" in demo.stdout
    assert f"ok  errors: {FAILING} points for {FAILING} failing requests sent\n" in demo.stdout
    assert f"ok  Prometheus /metrics: request_count_total = {SENT}\n" in demo.stdout
    stats = re.search(
        r"^ok  writer stats of 2 workers: points_written=(\d+) points_dropped=0 write_errors=0 "
        r"points_buffered=0; InfluxDB holds (\d+) points$",
        demo.stdout,
        re.MULTILINE,
    )
    assert stats is not None, demo.stdout
    assert stats[1] == stats[2]
    assert f"ok  plugin JsonLinesPlugin: {stats[2]} points in points.jsonl\n" in demo.stdout


def test_leaves_nothing_running(demo):
    """It ends by saying everything it started was stopped, in well under 2 minutes."""
    done = re.search(r"^done in ([\d.]+) s; everything started was stopped$", demo.stdout, re.M)
    assert done is not None and float(done[1]) < 120


def test_says_where_the_dashboards_are(demo, tmp_path):
    """The output names the dashboards' folder and the one command that writes them out."""
    where = re.search(
        r"^Grafana dashboards for these series \(InfluxQL\): (.+)$", demo.stdout, re.M
    )
    assert where is not None, demo.stdout
    assert Path(where[1]) == dashboard_dir()
    assert sorted(path.name for path in Path(where[1]).glob("*.json")) == dashboard_names()
    command = re.search(
        r"^write them out for Grafana: python (-m .+ --out DIR)$", demo.stdout, re.M
    )
    assert command is not None, demo.stdout
    args = command[1].replace("DIR", str(tmp_path)).split()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True, timeout=60)
    assert sorted(path.name for path in tmp_path.iterdir()) == dashboard_names()


def test_ends_with_the_report(demo):
    """The last lines name the HTML report of the demo's traffic, which holds every section."""
    assert f"\nreport: OK: wrote {REPORT_PATH}: {SENT} requests, {FAILING} errors " in demo.stdout
    page = REPORT_PATH.read_text(encoding="utf-8")
    assert all(f'<section id="{key}">' in page for key, _ in SECTIONS)
