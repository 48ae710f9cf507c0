"""The shipped alerting rules: promtool accepts them, each alert fires on the series that
should fire it (promtool's rule unit tests) and not on a healthy service, the names they use
are families the package exports, and a built wheel carries the file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from luna_monitoring.core.metric_families import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "luna_monitoring" / "alerts" / "luna_monitoring.rules.yml"
PROMQL = {"sum", "increase", "min", "rate", "histogram_quantile", "by"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: apt-get install -y prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """An input series of ``service="sdk"`` with ``labels``, one value a minute."""
    text = ",".join(f'{k}="{v}"' for k, v in sorted({"service": "sdk", **labels}.items()))
    return {"series": f"{name}{{{text}}}", "values": values}


def alert(name: str, at: str, severity: str, summary: str, description: str, **labels: str):
    """``name`` fires at ``at`` once, with exactly these labels and annotations."""
    expected = {
        "exp_labels": {"service": "sdk", "severity": severity, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }
    return {"eval_time": at, "alertname": name, "exp_alerts": [expected]}


def silent(name: str, at: str) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


BUCKET = "request_duration_seconds_bucket"
PLUGIN = {"plugin": "m:P"}
ROUTE = {"route": "POST:/sdk"}


def inputs(
    dropped: str,
    errors: str,
    written: str,
    plugin: str,
    balance: str,
    server_errors: str,
    buckets: dict[str, str],
) -> list[dict[str, str]]:
    """The input series of one case: values of each family, one a minute."""
    return [
        series("monitoring_points_dropped_total", dropped),
        series("monitoring_write_errors_total", errors),
        series("monitoring_points_written_total", written),
        series("monitoring_plugin_errors_total", plugin, **PLUGIN),
        series("monitoring_plugin_timeouts_total", "0+0x30", **PLUGIN),
        series("monitoring_plugin_points_dropped_total", "0+0x30", **PLUGIN),
        series("liveness_balance", balance),
        series("responses_total", server_errors, method="POST", status_class="5xx"),
        series("responses_total", "0+60x30", method="POST", status_class="2xx"),
        *(series(BUCKET, values, le=le, **ROUTE) for le, values in buckets.items()),
    ]  # fmt: skip


FIRING = {
    "input_series": inputs(
        "0 0 40 80 120", "0+3x30", "500+0x30", "0+1x30", "900", "0+6x30",
        {"1.0": "0+1x30", "5.0": "0+60x30", "+Inf": "0+60x30"},
    ),
    "alert_rule_test": [
        alert(
            "LunaMonitoringPointsDropped", "4m", "warning",
            "sdk: monitoring points are being dropped",
            "120 points were dropped in 10 minutes because the buffer was full "
            "(max_buffer_points): the database is unreachable or too slow.",
        ),
        silent("LunaMonitoringWritesFailing", "4m"),  # failing, but not for 5 minutes yet
        alert(
            "LunaMonitoringWritesFailing", "20m", "critical",
            "sdk: monitoring cannot write to its database",
            "Writes fail and no point was written for 10 minutes; points stay buffered until "
            "the buffer is full, then the oldest are dropped.",
        ),
        alert(
            "LunaMonitoringPluginFailing", "5m", "warning", "sdk: monitoring plugin m:P fails",
            "5 calls raised or timed out, or points were dropped because the plugin fell "
            "behind, in 10 minutes.", **PLUGIN,
        ),
        alert(
            "LunaLivenessBalanceLow", "1m", "warning", "sdk: liveness balance is low",
            "900 liveness estimations are left on the licence.",
        ),
        alert(
            "LunaErrorRatioHigh", "15m", "critical",
            "sdk: more than 5% of requests fail with 5xx",
            "9.091% of responses are server errors.",
        ),
        alert(
            "LunaLatencyP99High", "20m", "warning", "sdk POST:/sdk: p99 latency above 2.5 s",
            "The 99th percentile of request duration is 4.959s.", **ROUTE,
        ),
    ],
}  # fmt: skip
HEALTHY = {
    "input_series": inputs(  # one write error, retried
        "0+0x30", "0 1 1 1 1 1 1 1 1 1 1 1", "0+100x30", "0+0x30", "5000", "0+1x30",
        {"0.1": "0+60x30", "+Inf": "0+60x30"},
    ),
    "alert_rule_test": [
        silent(name, "25m")
        for name in (
            "LunaMonitoringPointsDropped", "LunaMonitoringWritesFailing",
            "LunaMonitoringPluginFailing", "LunaLivenessBalanceLow", "LunaErrorRatioHigh",
            "LunaLatencyP99High",
        )
    ],
}  # fmt: skip


def test_promtool_check_rules_accepts_the_file():
    """``promtool check rules`` passes: six rules."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@pytest.mark.parametrize("case", [FIRING, HEALTHY], ids=["firing", "healthy"])
def test_alerts_fire_exactly_when_they_should(tmp_path, case):
    """``promtool test rules``: each alert fires on its failure, none on a healthy service."""
    tests = tmp_path / "rules_test.yml"
    tests.write_text(
        json.dumps(
            {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [
                {"interval": "1m", **case}
            ]}
        )
    )  # fmt: skip
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_exported_families():
    """Every metric name in an expression is a family of the package."""
    text = RULES.read_text()
    exprs = " ".join(re.findall(r"expr: (.*\n(?:\s{10}\S.*\n)*)", text))
    used = set(re.findall(r"\b([a-z_]+)\b(?=[{(\[]| \)?[<>])", exprs)) - PROMQL
    assert len(re.findall("expr:", text)) == 6
    exported = {f.name for f in FAMILIES}
    exported |= {f"{f.name}_bucket" for f in FAMILIES if f.kind == "histogram"}
    assert used and used <= exported, used - exported


def test_a_built_wheel_ships_the_rules(built_wheel):
    """``pip wheel`` puts the rules file in the package."""
    assert "luna_monitoring/alerts/luna_monitoring.rules.yml" in built_wheel.names
