"""What the report shows, read from InfluxDB with aggregating InfluxQL.

Every query is bounded by the time range and the ``service`` tag, and aggregates in the
database (``COUNT``, ``SUM``, ``PERCENTILE``, ``GROUP BY time(...)``): what comes back is
at most one row per bucket and tag value, however many points the range holds. The series
and usage fields come from the schema, so a series added there is reported too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ..core.schema import ESTIMATOR_SERIES, USAGE_ESTIMATORS
from .influxql import InfluxQL, QueryError, Series, quote_ident, quote_string
from .timerange import TimeRange, bucket_ms

Line = list[tuple[float, float]]
"""Points of a line: ``(time in ms, value)``."""

LATENCY_PERCENTILES = (50, 95, 99)
BOX_PERCENTILES = (5, 25, 50, 75, 95, 99)
"""Levels of the estimators' distributions: box p25-p75, whiskers p5-p95, dots p99 and max."""
SLOWEST_SERIES = 8
"""Estimator series drawn over time: the slowest by p99."""
PARALLEL_QUERIES = 4
IMAGE_SIZE_EDGES = (0, 10_000, 50_000, 200_000, 1_000_000, 5_000_000)
"""Lower bounds (bytes) of the ``image_load`` size classes; the last is open-ended."""

_ERROR_TAGS = ("status_code", "error_code", "route")


class NoData(QueryError):
    """The range holds no ``requests`` point of the service."""


@dataclass
class RouteStats:
    """One route over the whole range."""

    route: str
    requests: int
    errors: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @property
    def error_ratio(self) -> float:
        """Errors per request."""
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class Distribution:
    """Percentiles of one series' ``execution_time`` over the range."""

    series: str
    count: int
    percentiles: dict[int, float]
    max: float


@dataclass
class ReportData:
    """Everything the page shows."""

    service: str
    window: TimeRange
    bucket_ms: int
    first_ms: float
    last_ms: float
    requests: int
    errors: int
    p50: float | None
    p99: float | None
    routes: list[RouteStats]
    latency: dict[str, dict[int, Line]] = field(default_factory=dict)
    rate: dict[str, Line] = field(default_factory=dict)
    errors_by_status: dict[str, Line] = field(default_factory=dict)
    errors_by_code: dict[str, Line] = field(default_factory=dict)
    error_table: list[tuple[str, str, str, int]] = field(default_factory=list)
    estimators: list[Distribution] = field(default_factory=list)
    estimator_lines: dict[str, dict[int, Line]] = field(default_factory=dict)
    batch_calls: dict[str, dict[str, int]] = field(default_factory=dict)
    image_load: list[tuple[str, str, int, float, float]] = field(default_factory=list)
    sdkloop: list[tuple[str, int, dict[int, float]]] = field(default_factory=list)
    usage_totals: dict[str, int] = field(default_factory=dict)
    usage_lines: dict[str, Line] = field(default_factory=dict)
    licensing: dict[str, Line] = field(default_factory=dict)
    license_summary: list[tuple[str, int, Any, str]] = field(default_factory=list)

    @property
    def worst_route(self) -> RouteStats | None:
        """The route with the most errors, then the slowest p99."""
        return self.routes[0] if self.routes else None


def _percentiles(column: str, levels: tuple[int, ...]) -> str:
    return ", ".join(f"PERCENTILE({column}, {p}) AS p{p}" for p in levels)


def _every(data: ReportData) -> str:
    """The ``GROUP BY`` term of the buckets over time."""
    return f"time({data.bucket_ms}ms)"


def _sums(estimators: Iterable[str]) -> str:
    """``SUM("<name>_usages") AS "<name>"`` for each estimator."""
    return ", ".join(
        f"SUM({quote_ident(name + '_usages')}) AS {quote_ident(name)}" for name in estimators
    )


def _lines(found: list[Series], tag: str | None, column: str, scale: float = 1.0) -> dict:
    """``{tag value (or measurement): [(ms, value)]}`` skipping empty values."""
    out: dict[str, Line] = {}
    for series in found:
        key = series.tags.get(tag, "") if tag else series.name
        out[key] = [(r["time"], r[column] * scale) for r in series.rows if r[column] is not None]
    return out


def _by_level(found: list[Series], levels: tuple[int, ...], tag: str | None) -> dict:
    """``{key: {level: line}}`` from a query with columns ``p<level>``."""
    out: dict[str, dict[int, Line]] = {}
    for series in found:
        key = series.tags.get(tag, "") if tag else series.name
        out[key] = {p: _lines([series], None, f"p{p}")[series.name] for p in levels}
    return out


class Reader:
    """Runs the report's queries for one service and time range."""

    def __init__(self, db: InfluxQL, window: TimeRange, service: str) -> None:
        self.db = db
        self.window = window
        self.service = service

    def _where(self) -> str:
        return f"{self.window.where()} AND {quote_ident('service')} = {quote_string(self.service)}"

    def _select(self, what: str, *measurements: str, group: str = "", where: str = "") -> str:
        source = ", ".join(map(self.db.measurement, measurements))
        statement = f"SELECT {what} FROM {source} WHERE {self._where()}{where}"
        return f"{statement} GROUP BY {group}" if group else statement

    def _one(self, statement: str) -> list[Series]:
        return self.db.query(statement)[0]

    def read(self) -> ReportData:
        """Query every section; :class:`NoData` when the range has no requests."""
        totals, first, last = self.db.query(
            self._select(
                "COUNT(execution_time) AS n, " + _percentiles("execution_time", (50, 99)),
                "requests",
            ),
            self._select("FIRST(execution_time)", "requests"),
            self._select("LAST(execution_time)", "requests"),
        )
        if not totals:
            raise NoData(self._no_data())
        row = totals[0].rows[0]
        first_ms, last_ms = first[0].rows[0]["time"], last[0].rows[0]["time"]
        bucket = bucket_ms(max(int((last_ms - first_ms) * 1e6), 1))
        routes = self._routes()
        data = ReportData(
            service=self.service,
            window=self.window,
            bucket_ms=bucket,
            first_ms=first_ms,
            last_ms=last_ms,
            requests=row["n"],
            errors=sum(r.errors for r in routes),
            p50=row["p50"],
            p99=row["p99"],
            routes=routes,
        )
        sections = (
            self._requests_over_time,
            self._errors,
            self._estimators,
            self._images,
            self._usages,
            self._licensing,
        )
        # Independent requests: a database with several cores answers them at once.
        with ThreadPoolExecutor(PARALLEL_QUERIES) as pool:
            for done in [pool.submit(section, data) for section in sections]:
                done.result()
        return data

    def _requests_over_time(self, data: ReportData) -> None:
        every = _every(data)
        latency, counts = self.db.query(
            self._select(
                _percentiles("execution_time", LATENCY_PERCENTILES),
                "requests",
                group=f"{every}, route fill(none)",
            ),
            self._select(
                "COUNT(execution_time) AS n", "requests", group=f"{every}, route fill(none)"
            ),
        )
        data.latency = _by_level(latency, LATENCY_PERCENTILES, "route")
        per_s = 1000 / data.bucket_ms
        data.rate = _zero_filled(_lines(counts, "route", "n", per_s), data)

    def _no_data(self) -> str:
        found = self.db.query(
            f"SELECT COUNT(execution_time) FROM {self.db.measurement('requests')} "
            f"WHERE {self.window.where()} GROUP BY service"
        )[0]
        others = sorted(s.tags.get("service", "") for s in found)
        hint = (
            f"; services with requests then: {', '.join(map(repr, others))} (use --service)"
            if others
            else "; pick a range with traffic (--since 1d, or --start/--end)"
        )
        return (
            f"no requests of service {self.service!r} in {self.db.database!r} from "
            f"{self.window.describe()}{hint}"
        )

    def _routes(self) -> list[RouteStats]:
        levels = _percentiles("execution_time", LATENCY_PERCENTILES)
        by_route, errors = self.db.query(
            self._select(f"COUNT(execution_time) AS n, {levels}", "requests", group="route"),
            self._select("COUNT(request_id) AS n", "errors", group="route"),
        )
        routes = {}
        for series in by_route:
            row = series.rows[0]
            route = series.tags.get("route", "")
            routes[route] = RouteStats(route, row["n"], 0, row["p50"], row["p95"], row["p99"])
        for series in errors:
            route = series.tags.get("route", "")
            stats = routes.setdefault(route, RouteStats(route, 0))
            stats.errors = series.rows[0]["n"]
        return sorted(routes.values(), key=lambda r: (-r.errors, -(r.p99 or 0), r.route))

    def _errors(self, data: ReportData) -> None:
        every = _every(data)
        count = "COUNT(request_id) AS n"
        by_status, by_code, table = self.db.query(
            self._select(count, "errors", group=f"{every}, status_code fill(none)"),
            self._select(count, "errors", group=f"{every}, error_code fill(none)"),
            self._select(count, "errors", group=", ".join(_ERROR_TAGS)),
        )
        data.errors_by_status = _zero_filled(_lines(by_status, "status_code", "n"), data)
        data.errors_by_code = _zero_filled(_lines(by_code, "error_code", "n"), data)
        rows = [(*(s.tags.get(tag, "") for tag in _ERROR_TAGS), s.rows[0]["n"]) for s in table]
        data.error_table = sorted(rows, key=lambda r: (-r[3], r[:3]))

    def _estimators(self, data: ReportData) -> None:
        every = _every(data)
        levels = _percentiles("execution_time", BOX_PERCENTILES)
        dist, batches = self.db.query(
            self._select(
                f"COUNT(execution_time) AS n, MAX(execution_time) AS max, {levels}",
                *ESTIMATOR_SERIES,
            ),
            self._select("COUNT(execution_time) AS n", *ESTIMATOR_SERIES, group="batch_size"),
        )
        data.estimators = sorted(
            (
                Distribution(
                    s.name,
                    s.rows[0]["n"],
                    {p: s.rows[0][f"p{p}"] for p in BOX_PERCENTILES},
                    s.rows[0]["max"],
                )
                for s in dist
            ),
            key=lambda d: -d.percentiles[50],
        )
        for series in batches:
            calls = data.batch_calls.setdefault(series.name, {})
            calls[series.tags.get("batch_size", "")] = series.rows[0]["n"]
        slowest = sorted(data.estimators, key=lambda d: -d.percentiles[99])[:SLOWEST_SERIES]
        if slowest:
            lines = self._select(
                _percentiles("execution_time", (50, 99)),
                *(d.series for d in slowest),
                group=f"{every} fill(none)",
            )
            data.estimator_lines = _by_level(self._one(lines), (50, 99), None)

    def _images(self, data: ReportData) -> None:
        levels = _percentiles("execution_time", (50, 95))
        bounds = [*IMAGE_SIZE_EDGES, None]
        statements = [
            self._select(
                f"COUNT(execution_time) AS n, {levels}",
                "image_load",
                group="format",
                where=f" AND size >= {low}" + (f" AND size < {high}" if high else ""),
            )
            for low, high in pairwise(bounds)
        ]
        for low, high, found in zip(bounds, bounds[1:], self.db.query(*statements), strict=False):
            for series in found:
                row = series.rows[0]
                label = size_class(low, high)
                fmt = series.tags.get("format", "")
                data.image_load.append((label, fmt, row["n"], row["p50"], row["p95"]))
        levels = _percentiles("execution_time", LATENCY_PERCENTILES)
        what = f"COUNT(execution_time) AS n, {levels}"
        for series in self._one(self._select(what, "sdkloop_task", group="image_count")):
            row = series.rows[0]
            pcts = {p: row[f"p{p}"] for p in LATENCY_PERCENTILES}
            data.sdkloop.append((series.tags.get("image_count", ""), row["n"], pcts))
        data.sdkloop.sort(key=lambda r: _numeric(r[0]))

    def _usages(self, data: ReportData) -> None:
        every = _every(data)
        totals = self._one(self._select(_sums(USAGE_ESTIMATORS), "usages_statistic"))
        if not totals:
            return
        row = totals[0].rows[0]
        data.usage_totals = {name: row[name] or 0 for name in USAGE_ESTIMATORS}
        used = [name for name, total in data.usage_totals.items() if total]
        if not used:
            return
        lines = self._one(
            self._select(_sums(used), "usages_statistic", group=f"{every} fill(none)")
        )
        data.usage_lines = _zero_filled(
            {name: [(r["time"], r[name] or 0) for r in lines[0].rows] for name in used}, data
        )

    def _licensing(self, data: ReportData) -> None:
        every = _every(data)
        points, summary = self.db.query(
            self._select(
                "MIN(liveness_balance) AS balance",
                "licensing",
                group=f"{every}, license_status fill(none)",
            ),
            self._select(
                "COUNT(liveness_balance) AS n, LAST(liveness_balance) AS balance, "
                "LAST(warnings) AS warnings, LAST(errors) AS errors",
                "licensing",
                group="license_status",
            ),
        )
        data.licensing = _lines(points, "license_status", "balance")
        for series in summary:
            row = series.rows[0]
            status = series.tags.get("license_status", "")
            message = row["errors"] if status == "error" else row["warnings"]
            data.license_summary.append((status, row["n"], row["balance"], _messages(message)))


def _messages(text: str | None) -> str:
    """The ``warnings``/``errors`` field (a JSON array of strings) as ``"a; b"``."""
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return text or ""
    return "; ".join(map(str, found)) if isinstance(found, list) else str(found)


def _zero_filled(lines: dict[str, Line], data: ReportData) -> dict[str, Line]:
    """Counts per bucket with the empty buckets as 0, from the first request's bucket on."""
    step = data.bucket_ms
    ends = [t for line in lines.values() for t, _ in line]
    if not ends:
        return lines
    low = min(data.first_ms // step * step, *ends)
    grid = range(int(low), int(max(ends)) + 1, step)
    return {key: _on_grid(line, grid) for key, line in lines.items()}


def _on_grid(line: Line, grid: range) -> Line:
    values = dict(line)
    return [(t, values.get(t, 0)) for t in grid]


def size_class(low: int, high: int | None) -> str:
    """``"10-50 kB"``, ``"≥ 5 MB"``: the label of a size class."""
    if high is None:
        return f"≥ {_bytes(low)}"
    if low == 0:
        return f"< {_bytes(high)}"
    return f"{_bytes(low)}-{_bytes(high)}"


def _bytes(n: int) -> str:
    return f"{n // 1_000_000} MB" if n >= 1_000_000 else f"{n // 1000} kB"


def _numeric(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 62, text)
