"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sanic import Sanic

# real-server fixtures (block below)
from servers import (
    ClickHouse,
    ClickHouseCluster,
    InfluxDatabase,
    InfluxDB1,
    Prometheus,
    VictoriaMetrics,
    free_port,
    unique_name,
)

from example_app.demo import DATABASE, Outcome, plan, run_service
from example_app.influxd import InfluxD
from luna_monitoring import MonitoringExtension

# ============================================================================
# BEGIN real-server fixtures -- harness lives in tests/servers.py.
# Keep this block self-contained; add other fixtures below the END marker.
# ============================================================================


@pytest.fixture(scope="session")
def influxdb() -> Iterator[InfluxDB1]:
    """One InfluxDB 1.x server for the session (kill/stop tests: ``own_influxdb``)."""
    with InfluxDB1() as server:
        yield server


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics server for the session; use unique metric names."""
    with VictoriaMetrics() as server:
        yield server


@pytest.fixture
def influx_db(influxdb: InfluxDB1) -> Iterator[InfluxDatabase]:
    """A fresh, uniquely named database on the session server, dropped afterwards."""
    db = InfluxDatabase(influxdb, unique_name("db"))
    influxdb.create_database(db.name)
    yield db
    if influxdb.is_running:
        influxdb.drop_database(db.name)


@pytest.fixture
def own_influxdb() -> Iterator[InfluxDB1]:
    """A private InfluxDB 1.x server for this test (free to SIGKILL/SIGSTOP/restart)."""
    with InfluxDB1() as server:
        yield server


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., Prometheus]]:
    """``factory(target, metrics_path="/metrics", scrape_interval="1s")`` -> started
    Prometheus scraping ``target`` (``"127.0.0.1:PORT"``); closed after the test."""
    with contextlib.ExitStack() as stack:

        def factory(
            target: str, metrics_path: str = "/metrics", scrape_interval: str = "1s"
        ) -> Prometheus:
            return stack.enter_context(Prometheus(target, metrics_path, scrape_interval))

        yield factory


# ============================================================================
# END real-server fixtures
# ============================================================================


@pytest.fixture
def make_app(influx_db: InfluxDatabase) -> Iterator[Callable[..., Sanic]]:
    """``make_app(extension_plugins=(), request_class=None, **monitoring)`` -> a uniquely
    named app with ``MonitoringExtension(plugins=extension_plugins)`` writing to
    ``influx_db`` (InfluxDB 1.x, 0.1 s flushing period); keys given override those."""
    Sanic.test_mode = True
    names = []

    def factory(
        extension_plugins: tuple = (), request_class: type | None = None, **monitoring: Any
    ) -> Sanic:
        app = Sanic(unique_name("app"), request_class=request_class)
        names.append(app.name)
        app.config.MONITORING = {
            "version": 1,
            "port": influx_db.server.port,
            "database": influx_db.name,
            "flushing_period": 0.1,
            **monitoring,
        }
        app.extend(extensions=[MonitoringExtension(plugins=extension_plugins)])
        return app

    yield factory
    for name in names:
        Sanic._app_registry.pop(name, None)


@pytest.fixture
async def serve_app() -> AsyncIterator[Callable[[Sanic], Awaitable[str]]]:
    """``await serve_app(app)`` -> base URL of ``app`` served on 127.0.0.1 in the test's event
    loop with all its listeners; stopped (listeners included) after the test."""
    servers = []

    async def serve(app: Sanic) -> str:
        port = free_port()
        server = await app.create_server(
            host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
        )
        await server.startup()
        await server.before_start()
        await server.after_start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server in reversed(servers):
        await server.before_stop()
        server.close()
        await server.wait_closed()
        await server.after_stop()


@pytest.fixture(scope="session")
def demo_traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxD, Outcome]]:
    """The demo's traffic (``example_app.demo.plan``: 200 requests, 2 workers, every series)
    in a throw-away InfluxDB 1.x, database ``example_app.demo.DATABASE``; with what was sent."""
    with InfluxD() as influx:
        influx.create_database(DATABASE)
        outcome = run_service(influx, plan(random.Random(2024)), tmp_path_factory.mktemp("demo"))
        yield influx, outcome


@pytest.fixture(params=["sanic", "aiohttp"])
def framework(request: pytest.FixtureRequest) -> str:
    """The framework of the app under test: the suites that take it run on both."""
    return request.param


@pytest.fixture
def make_any_app(framework: str, influx_db: InfluxDatabase) -> Iterator[Callable[..., Any]]:
    """``make_any_app(plugins=(), **monitoring)`` -> ``tests/apps/equivalent.py``'s app of
    ``framework`` (not yet served), writing to ``influx_db`` (0.1 s flushing period); keys
    given override those. Add routes with ``equivalent.route``."""
    from apps.equivalent import aiohttp_app, sanic_app

    names = []

    def make(plugins: tuple = (), **monitoring: Any) -> Any:
        config = {
            "version": 1,
            "port": influx_db.server.port,
            "database": influx_db.name,
            "flushing_period": 0.1,
            **monitoring,
        }
        if framework == "aiohttp":
            return aiohttp_app(config, plugins)
        Sanic.test_mode = True
        app = sanic_app(unique_name("app"), config, plugins)
        names.append(app.name)
        return app

    yield make
    for name in names:
        Sanic._app_registry.pop(name, None)


@pytest.fixture
async def serve_any(
    serve_app: Callable[[Sanic], Awaitable[str]],
) -> AsyncIterator[Callable[[Any], Awaitable[str]]]:
    """``await serve_any(app)`` -> base URL of a Sanic or aiohttp app served on 127.0.0.1 in
    the test's event loop, started (startup listeners, cleanup context) and stopped after the
    test."""
    from aiohttp import web

    runners = []

    async def serve(app: Any) -> str:
        if isinstance(app, Sanic):
            return await serve_app(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
def build_app(
    make_any_app: Callable[..., Any], serve_any: Callable[[Any], Awaitable[str]]
) -> Callable[..., Awaitable[tuple[Any, str]]]:
    """``await build_app(plugins=(), **monitoring)`` -> (app, base URL): ``make_any_app``'s
    app, served."""

    async def build(plugins: tuple = (), **monitoring: Any) -> tuple[Any, str]:
        app = make_any_app(plugins, **monitoring)
        return app, await serve_any(app)

    return build


@pytest.fixture
def spell(framework: str) -> Callable[[str], str]:
    """``spell("GET:/handlers/<handler_id>")`` -> the route as ``framework`` names it."""
    if framework == "sanic":
        return lambda route: route
    return lambda route: route.replace("<", "{").replace(">", "}")


@pytest.fixture(scope="session")
def clickhouse() -> Iterator[ClickHouse]:
    """One ClickHouse 18.16 server for the session (kill tests: ``own_clickhouse``)."""
    with ClickHouse() as server:
        yield server


@pytest.fixture
def own_clickhouse() -> Iterator[ClickHouse]:
    """A private ClickHouse server for this test (free to SIGKILL/restart)."""
    with ClickHouse() as server:
        yield server


@pytest.fixture
def clickhouse_db(clickhouse: ClickHouse) -> Iterator[str]:
    """A uniquely named database name on the session ClickHouse (not created), dropped after."""
    name = unique_name("db")
    yield name
    if clickhouse.is_running:
        clickhouse.query(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def clickhouse_cluster() -> Iterator[ClickHouseCluster]:
    """Two ClickHouse servers, each a shard of the cluster ``ClickHouseCluster.NAME``."""
    with ClickHouseCluster() as cluster:
        yield cluster


class BuiltWheel(NamedTuple):
    """The package's wheel as ``pip wheel`` builds it, and what pip printed."""

    names: frozenset[str]
    metadata: str
    output: str


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """The wheel built once from a copy of the sources (so that the checkout stays clean)."""
    root = Path(__file__).resolve().parent.parent
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("luna_monitoring", "example_app"):
        shutil.copytree(root / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    [wheel] = (work / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = frozenset(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        return BuiltWheel(names, archive.read(metadata).decode(), built.stdout + built.stderr)


@pytest.fixture
def mount_tmpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Path]]:
    """``mount_tmpfs(size="256k", read_only=False)`` -> the directory of a fresh tmpfs (a
    real small or read-only disk; the tests run as root on Linux); unmounted afterwards."""
    mounts: list[Path] = []

    def mount(size: str = "256k", read_only: bool = False) -> Path:
        path = tmp_path_factory.mktemp("tmpfs")
        options = f"{'ro,' if read_only else ''}size={size}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=True)
