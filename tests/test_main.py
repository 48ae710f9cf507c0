"""``python -m luna_monitoring``: the commands as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from luna_monitoring.cli.reference import config_table
from luna_monitoring.core.schema import SERIES, series_table
from luna_monitoring.core.settings import config_reference


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line with a clean LUNA_MONITORING_* environment plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LUNA_MONITORING_")}
    return subprocess.run(
        [sys.executable, "-m", "luna_monitoring", *args],
        env=environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_series_prints_the_series_table():
    """``series`` prints the Markdown table of all 44 series."""
    result = cli("series")
    assert (result.returncode, result.stdout) == (0, series_table())
    assert len(result.stdout.splitlines()) == 2 + len(SERIES) == 46


def test_config_prints_the_config_table():
    """``config`` prints one row per config key, with default and meaning."""
    result = cli("config")
    assert (result.returncode, result.stdout) == (0, config_table())
    rows = result.stdout.splitlines()[2:]
    assert len(rows) == len(config_reference())
    assert rows[0] == "| `send_data_for_monitoring` | `True` | master switch; False = no points |"


def test_check_success_from_environment(influx_db):
    """``check`` with LUNA_MONITORING_* variables: one OK line, exit 0, one point stored."""
    result = cli(
        "check",
        env={
            "LUNA_MONITORING_VERSION": "1",
            "LUNA_MONITORING_PORT": str(influx_db.server.port),
            "LUNA_MONITORING_DATABASE": influx_db.name,
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "OK: wrote 1 point (monitoring_check) to InfluxDB v1 at "
        f"http://127.0.0.1:{influx_db.server.port}, database '{influx_db.name}'\n"
    )
    assert influx_db.count("monitoring_check") == 1


def test_check_failure_from_file(tmp_path, influxdb):
    """``check FILE`` that fails: one FAIL line, exit 1, nothing on stderr, no secret."""
    path = tmp_path / "monitoring.json"
    path.write_text(
        f'{{"version": 1, "port": {influxdb.port}, "database": "nope", "password": "pw"}}'
    )
    result = cli("check", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "FAIL: database 'nope' not found (404): create it first\n",
        "",
    )


def test_usage_error():
    """No command: argparse's usage error, exit 2."""
    result = cli()
    assert result.returncode == 2
    assert "usage: python -m luna_monitoring" in result.stderr


def test_series_with_a_config_lists_its_custom_series(tmp_path):
    """``series monitoring.json`` adds the config's custom series after the built-in ones."""
    path = tmp_path / "monitoring.json"
    path.write_text(
        '{"MONITORING": {"custom_series": {"cache_lookup": {"description": "cache lookups", '
        '"tags": ["cache"], "fields": {"hits": "int", "latency": "float"}}}}}'
    )
    result = cli("series", str(path))
    assert result.returncode == 0
    assert result.stdout.startswith(series_table())
    assert result.stdout[len(series_table()) :] == (
        "| `cache_lookup` | cache lookups | `cache` | `hits` int, `latency` float |\n"
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"custom_series": {"requests": {"fields": {"a": "int"}}}}')
    failed = cli("series", str(bad))
    assert failed.returncode == 1
    assert failed.stderr == (
        "FAIL: MONITORING['custom_series']: expected names other than the built-in series, "
        "got 'requests'\n"
    )
