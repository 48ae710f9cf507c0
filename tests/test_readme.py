"""README.md stays true: generated tables match the commands, every sample runs.

Every ```python block is executed. A block that defines ``app`` (or ``create_app``) is then
served for real: its MONITORING is pointed at the test's server (InfluxDB 1.x for
``version`` 1, VictoriaMetrics, which speaks the v2 write API, for ``version`` 2), each of
its routes gets a request, and the ``requests`` points must arrive, one per request. An
aiohttp ``app`` (``setup_monitoring``) is served the same way.
"""

from __future__ import annotations

import asyncio
import io
import linecache
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from apps.equivalent import monitoring_of
from PIL import Image
from sanic import Sanic
from servers import unique_name

import luna_monitoring
import luna_monitoring.aiohttp
from example_app.app import ENV_PREFIX, Options
from luna_monitoring.core.envconfig import config_from_env
from luna_monitoring.core.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()
SAMPLE_MODULE = "readme_sample"


def generated(name: str) -> str:
    """The README's copy between ``<!-- BEGIN name ... -->`` and ``<!-- END name -->``."""
    match = re.search(rf"<!-- BEGIN {name}\b.*?-->\n(.*?)<!-- END {name} -->", TEXT, re.S)
    assert match is not None, f"README has no {name} markers"
    return match[1]


def cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "luna_monitoring", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def python_blocks() -> list[Any]:
    """Each ```python block, named by the README line it starts on."""
    return [
        pytest.param(match[1], id=f"README.md:{TEXT.count(chr(10), 0, match.start()) + 2}")
        for match in re.finditer(r"^```python\n(.*?)^```", TEXT, re.S | re.M)
    ]


def run_sample(code: str, name: str) -> dict[str, Any]:
    """Execute a sample as module ``readme_sample``; its source is registered under ``name``
    for tracebacks and ``inspect.getsource`` (which Sanic calls on handlers)."""
    linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
    namespace: dict[str, Any] = {"__name__": SAMPLE_MODULE}
    exec(compile(code, name, "exec"), namespace)
    return namespace


class TestGenerated:
    def test_series_reference_matches_the_command(self):
        """The series table is what ``python -m luna_monitoring series`` prints."""
        assert generated("series") == cli("series")

    def test_config_table_matches_the_command(self):
        """The configuration table is what ``python -m luna_monitoring config`` prints."""
        assert generated("config") == cli("config")


class TestContent:
    def test_starts_with_the_two_commands(self):
        """The first thing a reader sees is how to run the demo and the tests."""
        first_block = TEXT.split("```sh\n", 1)[1].split("```", 1)[0]
        assert TEXT.startswith("# luna-monitoring\n\n```sh\nmake demo")
        assert [line.split()[:2] for line in first_block.splitlines()] == [
            ["make", "demo"],
            ["make", "test"],
        ]

    @pytest.mark.parametrize("name", luna_monitoring.__all__)
    def test_public_name_is_documented(self, name):
        """Every public name appears in the API table."""
        assert re.search(rf"^\| `{name}[`(]", TEXT, re.M), name

    def test_environment_variables_exist(self):
        """Every LUNA_MONITORING_* variable the README names is one the package reads."""
        names = set(re.findall(r"\bLUNA_MONITORING_[A-Z_]+[A-Z]\b", TEXT))
        assert len(names) >= 9
        config_from_env(dict.fromkeys(names, "1"))  # raises for a name it does not know

    def test_every_dependency_is_listed(self):
        """The Install section names every dependency of pyproject.toml."""
        project = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
        install = TEXT[TEXT.index("## Install") : TEXT.index("## Quick start")]
        for requirement in project["dependencies"]:
            name = re.split(r"[\[<>=]", requirement)[0]
            assert f"`{name}" in install, name

    def test_metrics_content_type_is_quoted_exactly(self):
        """The Prometheus section quotes the content type /metrics sends."""
        assert f"(`{PROMETHEUS_CONTENT_TYPE}`)" in TEXT.replace("\n", " ")

    def test_example_variables_are_documented(self):
        """Every LUNA_EXAMPLE_* option of example_app is in its table, with its default."""
        for option in fields(Options):
            row = f"| `{ENV_PREFIX}{option.name.upper()}` | `{option.default}` |"
            assert row in TEXT, row


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def redirect(influx_db, victoria, monkeypatch) -> str:
    """Point every app's MONITORING at the test servers; returns the v2 ``service`` tag."""
    service = unique_name("readme")
    extend = Sanic.extend
    setup_monitoring = luna_monitoring.aiohttp.setup_monitoring

    def redirected_config(config: Any) -> dict:
        config = dict(config or {})
        if config.get("version", 2) == 1:
            config |= {"port": influx_db.server.port, "database": influx_db.name}
        else:
            config |= {"port": victoria.port, "service": service}
        return config | {"host": "127.0.0.1", "flushing_period": 0.1}

    def redirected(app: Sanic, *args: Any, **kwargs: Any) -> Any:
        app.config.MONITORING = redirected_config(app.config.get("MONITORING"))
        return extend(app, *args, **kwargs)

    def redirected_setup(app: Any, config: Any, **kwargs: Any) -> Any:
        return setup_monitoring(app, redirected_config(config), **kwargs)

    monkeypatch.setattr(Sanic, "extend", redirected)
    monkeypatch.setattr(luna_monitoring.aiohttp, "setup_monitoring", redirected_setup)
    monkeypatch.setattr(Sanic, "test_mode", True)
    return service


async def stored_requests(app: Any, influx_db: Any, victoria: Any, service: str) -> int:
    monitoring = monitoring_of(app)
    await monitoring.flush()
    if monitoring.settings.version == 1:
        return influx_db.count("requests")
    exported = victoria.export(f'requests_execution_time{{service="{service}"}}')
    return sum(len(series["values"]) for series in exported)


@pytest.mark.parametrize("code", python_blocks())
async def test_python_sample_runs(code, redirect, influx_db, victoria, serve_any, request):
    """The sample runs; a service sample serves every route and its points arrive."""
    namespace = run_sample(code, f"<{request.node.callspec.id}>")
    app = namespace.get("app") or (namespace["create_app"]() if "create_app" in namespace else None)
    if app is None:
        return
    try:
        sent = 0
        async with httpx.AsyncClient(base_url=await serve_any(app), trust_env=False) as client:
            for method, path in sample_routes(app):
                body = jpeg() if method == "POST" else None
                response = await client.request(method, path, content=body)
                assert response.status_code == 200, response.text
                sent += 1
        assert sent >= 1
        deadline = time.monotonic() + 10
        while (count := await stored_requests(app, influx_db, victoria, redirect)) < sent:
            assert time.monotonic() < deadline, f"{count} of {sent} requests points stored"
            await asyncio.sleep(0.1)
        assert count == sent
    finally:
        if isinstance(app, Sanic):
            Sanic._app_registry.pop(app.name, None)


def sample_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route a sample app of either framework declared itself."""
    if isinstance(app, Sanic):
        return [
            (method, f"/{route.path}")
            for route in app.router.routes
            if route.handler.__module__ == SAMPLE_MODULE
            for method in sorted(route.methods)
        ]
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if getattr(route.handler, "__module__", None) == SAMPLE_MODULE and route.method != "HEAD"
    ]
