"""The core imports no web framework; the adapters import only their own.

Each check runs in a fresh interpreter whose meta-path finder refuses the blocked modules,
so an import of them anywhere below the imported modules fails the check. The storages talk
to InfluxDB with aiohttp's client, so for them only aiohttp's server side (``aiohttp.web``)
is blocked; the core is checked with all of aiohttp blocked.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import pytest

import luna_monitoring.core

CORE = sorted(
    f"luna_monitoring.core.{m.name}" for m in pkgutil.iter_modules(luna_monitoring.core.__path__)
)
SANIC = ("sanic", "sanic_ext", "sanic_routing", "sanic_testing")


def _import_blocked(
    modules: list[str], blocked: tuple[str, ...], statement: str = ""
) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import importlib, sys

        BLOCKED = {blocked!r}

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError(f"blocked import of {{name}}")
                return None

        sys.meta_path.insert(0, Refuse())
        for module in {modules!r}:
            importlib.import_module(module)
        {statement}
        leaked = [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)]
        assert not leaked, leaked
        print("ok")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_core_modules_are_found():
    assert {"luna_monitoring.core.collector", "luna_monitoring.core.request_points"} <= set(CORE)


def test_core_imports_no_framework():
    result = _import_blocked(CORE, (*SANIC, "aiohttp"))
    assert result.stdout.strip() == "ok", result.stderr


def test_storages_import_no_server_framework():
    result = _import_blocked(["luna_monitoring.storages"], (*SANIC, "aiohttp.web"))
    assert result.stdout.strip() == "ok", result.stderr


def test_public_names_import_no_framework():
    names = (
        "BaseRequestMonitoringPlugin, EstimationCollector, MonitoringConfigError, Settings, "
        "add_request_fields, add_request_tags, current_collector, monitored_estimation"
    )
    result = _import_blocked([], (*SANIC, "aiohttp.web"), f"from luna_monitoring import {names}")
    assert result.stdout.strip() == "ok", result.stderr


def test_blocking_works():
    result = _import_blocked([], SANIC, "from luna_monitoring import MonitoringExtension")
    assert "blocked import of sanic" in result.stderr


def test_aiohttp_adapter_imports_no_sanic():
    result = _import_blocked(["luna_monitoring.aiohttp"], SANIC)
    assert result.stdout.strip() == "ok", result.stderr


def test_sanic_adapter_imports_no_aiohttp_server():
    result = _import_blocked(["luna_monitoring.sanic"], ("aiohttp.web",))
    assert result.stdout.strip() == "ok", result.stderr


def test_monitoring_extension_stays_importable_from_the_top():
    from luna_monitoring import MonitoringExtension
    from luna_monitoring.sanic import MonitoringExtension as FromAdapter

    assert MonitoringExtension is FromAdapter


def test_an_unknown_top_level_name_is_an_attribute_error():
    import luna_monitoring

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        luna_monitoring.Nope  # noqa: B018
