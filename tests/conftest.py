"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

# real-server fixtures (block below)
from servers import InfluxDatabase, InfluxDB1, Prometheus, VictoriaMetrics, unique_name

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
