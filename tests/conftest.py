"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic

# real-server fixtures (block below)
from servers import (
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
