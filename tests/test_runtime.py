"""``Monitoring.record``: its inline common case gives what the full checks give."""

from __future__ import annotations

import math
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from luna_monitoring.core.clock import UniqueClock
from luna_monitoring.core.point import Dropped, Point
from luna_monitoring.core.runtime import Monitoring
from luna_monitoring.core.schema import get_series
from luna_monitoring.core.settings import Settings
from luna_monitoring.core.writer import Writer
from luna_monitoring.storages import make_storage

CUSTOM = {"cache_lookup": {"tags": ["cache"], "fields": {"hits": "int", "latency": "float"}}}


def monitoring(sinks: tuple = ()) -> tuple[Monitoring, list[tuple]]:
    """A ``Monitoring`` whose points land in the returned list."""
    settings = Settings.from_config({"service": "svc", "custom_series": CUSTOM})
    runtime = Monitoring(settings, Writer(settings, make_storage(settings), sinks), UniqueClock())
    emitted: list[tuple] = []
    runtime.emit = emitted.append
    return runtime, emitted


def checked(series: str, tags: Any, fields: Any) -> tuple[dict, dict]:
    """What the full checks make of ``tags`` and ``fields`` (as record() did before)."""
    settings = Settings.from_config({"service": "svc", "custom_series": CUSTOM})
    spec = settings.custom_series.get(series) or get_series(series)
    tags_out = spec.check_tags(tags or {}, extra_allowed=spec.kind == "request")
    tags_out["service"] = "svc"
    return tags_out, spec.check_fields(fields or {}, drop=Dropped)


def comparable(fields: dict) -> dict:
    return {k: v.reason if isinstance(v, Dropped) else v for k, v in fields.items()}


CASES = [
    ("requests", {"route": "GET:/", "status_code": "200"}, {"execution_time": 0.5}),
    ("requests", {"status_code": "200", "route": "GET:/", "extra_x": "1"}, {"request_id": "a"}),
    ("requests", {"route": "GET:/", "status_code": 200}, {"execution_time": 1}),
    ("requests", {"route": "GET:/", "service": "given", "status_code": "500"}, {}),
    ("requests", MappingProxyType({"route": "r", "status_code": "1"}), {"execution_time": 2.0}),
    ("cache_lookup", {"cache": "a"}, {"hits": 3, "latency": 0.25}),
    ("cache_lookup", {"cache": "a"}, {"hits": True, "latency": math.nan}),
    ("cache_lookup", {"cache": "a"}, {"hits": 2**63, "latency": math.inf}),
    ("cache_lookup", {"cache": "a"}, {"hits": 2.0, "latency": Decimal("1.5"), "bogus": 1}),
    ("cache_lookup", {"cache": "a"}, {"hits": None, "latency": "0.1"}),
    ("cache_lookup", {"cache": "a"}, MappingProxyType({"hits": -(2**63)})),
    ("cache_lookup", {"cache": "a"}, None),
    ("licensing", {"license_status": "warning"}, {"liveness_balance": 3, "warnings": "[]"}),
]


@pytest.mark.parametrize(("series", "tags", "fields"), CASES)
def test_record_gives_what_the_checks_give(series: str, tags: Any, fields: Any) -> None:
    runtime, emitted = monitoring()
    runtime.record(series, tags=tags, fields=fields, time_ns=5)
    [(name, time_ns, tags_out, fields_out)] = emitted
    expected_tags, expected_fields = checked(series, tags, fields)
    assert (name, time_ns) == (series, 5)
    assert list(tags_out.items()) == list(expected_tags.items())
    assert list(comparable(fields_out).items()) == list(comparable(expected_fields).items())
    assert [type(v) for v in fields_out.values()] == [type(v) for v in expected_fields.values()]


@pytest.mark.parametrize(
    ("series", "tags", "message"),
    [
        ("nope", {}, r"^unknown series 'nope'; valid series: .*; custom_series: cache_lookup$"),
        ("requests", {"route": "r"}, r"^requests: missing required tag\(s\) status_code; "),
        ("cache_lookup", {"cache": "a", "x": "1"}, r"^cache_lookup: unknown tag 'x'; valid tags"),
        ("cache_lookup", {"cache": None}, r"^cache_lookup: missing required tag\(s\) cache;"),
        ("cache_lookup", {"cache": ["a"]}, r"^cache_lookup: tag 'cache' must be str, int, "),
    ],
)
def test_errors_are_those_of_the_checks(series: str, tags: dict, message: str) -> None:
    runtime, emitted = monitoring()
    for _ in range(2):  # the second time with the series' plan cached, if it is valid
        with pytest.raises(ValueError, match=message):
            runtime.record(series, tags=tags, fields={"hits": 1})
    with pytest.raises(ValueError, match=r"^time_ns must be a non-negative int, got -1$"):
        runtime.record("cache_lookup", tags={"cache": "a"}, fields={"hits": 1}, time_ns=-1)
    assert emitted == []


def test_the_callers_dicts_are_not_kept() -> None:
    runtime, emitted = monitoring()
    tags, fields = {"cache": "a"}, {"hits": 1}
    runtime.record("cache_lookup", tags=tags, fields=fields)
    tags["cache"], fields["hits"] = "b", 2
    [(_, _, tags_out, fields_out)] = emitted
    assert (tags_out, fields_out) == ({"cache": "a", "service": "svc"}, {"hits": 1})


async def test_buffered_as_plain_tuples_sinks_get_points_with_the_same_values() -> None:
    """record() buffers a plain tuple (cheaper than a ``Point``); plugins and Prometheus,
    which are sinks, still get ``Point``s."""
    received: list[Point] = []
    settings = Settings.from_config({"service": "svc", "custom_series": CUSTOM})
    writer = Writer(settings, make_storage(settings), (received.extend,))
    runtime = Monitoring(settings, writer, UniqueClock())
    runtime.record("cache_lookup", tags={"cache": "a"}, fields={"hits": 1, "latency": 2}, time_ns=7)
    assert type(writer._buffer.take(1)[0]) is tuple
    runtime.record("cache_lookup", tags={"cache": "a"}, fields={"hits": 1, "latency": 2}, time_ns=7)
    await writer._drain_all()
    [point] = received
    assert type(point) is Point
    assert point == Point(
        "cache_lookup", 7, {"cache": "a", "service": "svc"}, {"hits": 1, "latency": 2.0}
    )
    assert type(point.fields["latency"]) is float
