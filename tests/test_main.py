"""``python -m luna_monitoring``: the commands as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import luna_monitoring
from luna_monitoring.cli.reference import config_table
from luna_monitoring.core.schema import SERIES, series_table
from luna_monitoring.core.settings import config_reference
from luna_monitoring.core.version import package_version

ROOT = Path(__file__).resolve().parent.parent


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


def test_version_option_and_attribute():
    """``--version`` and ``luna_monitoring.__version__`` give the installed version."""
    installed = metadata.version("luna-monitoring")
    assert luna_monitoring.__version__ == installed
    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"luna-monitoring {installed}\n")


def test_version_of_a_source_checkout_comes_from_pyproject(monkeypatch):
    """Not installed (a checkout on ``sys.path``): the version in ``pyproject.toml``."""

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert package_version() == pyproject["project"]["version"]


def test_help_is_plain_text():
    """No reST markup (double backticks, roles) in ``--help`` of the program or a command."""
    for args in (["--help"], ["check", "--help"], ["series", "--help"]):
        result = cli(*args)
        assert result.returncode == 0 and result.stdout.startswith("usage: ")
        assert "``" not in result.stdout and ":data:" not in result.stdout


def test_check_dry_run_with_timeout_on_the_command_line(tmp_path, influx_db):
    """``check --dry-run --timeout 5 FILE``: one OK line, exit 0, nothing written."""
    path = tmp_path / "monitoring.json"
    config = {"version": 1, "port": influx_db.server.port, "database": influx_db.name}
    path.write_text(json.dumps(config))
    result = cli("check", "--dry-run", "--timeout", "5", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(
        f": credentials accepted, database '{influx_db.name}' exists; nothing written\n"
    )
    assert influx_db.query("SHOW MEASUREMENTS") == []
    bad = cli("check", "--timeout", "0", str(path))
    assert bad.returncode == 2 and "--timeout: expected seconds > 0, got '0'" in bad.stderr


def test_wheel_builds_without_a_license_deprecation_warning(built_wheel):
    """The SPDX ``license`` needs setuptools >= 77, which the build requires."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["build-system"]["requires"] == ["setuptools>=77"]
    assert int(metadata.version("setuptools").split(".")[0]) >= 77
    assert "deprecated" not in built_wheel.output
    assert "License-Expression: MIT" in built_wheel.metadata.splitlines()
