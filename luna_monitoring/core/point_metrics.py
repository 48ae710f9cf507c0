"""The writer sink that turns drained points into Prometheus metrics (see metric_families).

Runs in the background on each drained slice of points: sums are made in memory and each
changed value is written to the worker's files once per slice. The file keys of a tag set
are made once and cached (bounded), so a steady stream costs a few dict operations per point.
"""

from __future__ import annotations

import shutil
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from .caches import with_room
from .metric_families import (
    DEFAULT_BUCKETS,
    ESTIMATORS,
    USAGE_FIELDS,
    count_range,
    image_format,
    license_status,
    route_method,
    status_class,
)
from .metric_files import INF, HistogramKeys, MetricFiles
from .point import Point

_Sums = defaultdict[str, float]
_BALANCE_MODE = "mostrecent"


def _observe(sums: _Sums, keys: HistogramKeys, value: float) -> None:
    sum_key, buckets, bounds = keys
    sums[sum_key] += value
    sums[buckets[bisect_left(bounds, value)]] += 1.0


class PointMetrics:
    """This worker's metrics from its points; :meth:`feed` is the writer sink.

    >>> metrics = PointMetrics(directory, {"dc": "eu"})
    >>> metrics.feed(points)
    >>> metrics.exposition()  # every worker's metrics of the directory, merged
    """

    def __init__(
        self,
        directory: str,
        extra_labels: Mapping[str, str],
        *,
        buckets: Mapping[str, tuple[float, ...]] = DEFAULT_BUCKETS,
        owns_directory: bool = False,
    ) -> None:
        self.directory = directory
        self._owns_directory = owns_directory
        self.files = MetricFiles(directory, extra_labels)
        self._bounds = {name: (*bounds, INF) for name, bounds in buckets.items()}
        self._requests: dict[tuple, tuple[str, str, HistogramKeys]] = {}
        self._estimations: dict[tuple, HistogramKeys] = {}
        self._cached: dict[tuple, Any] = {}  # the rarer series' keys by (series, tag values)
        self._balances: dict[str, tuple[float, float]] = {}  # key: (value, time) this slice
        self._by_series: dict[str, Callable[[int, Mapping, Mapping, _Sums, _Sums], None]] = {
            "errors": self._error,
            "image_load": self._image_load,
            "sdkloop_task": self._sdkloop_task,
            "usages_statistic": self._usages,
            "licensing": self._licensing,
        }

    def feed(self, points: list[Point]) -> None:
        """Count, sum and observe what ``points`` hold; other series are ignored."""
        counts: _Sums = defaultdict(float)
        sums: _Sums = defaultdict(float)
        requests = self._requests
        estimations = self._estimations
        by_series = self._by_series
        for series, time_ns, tags, fields in points:
            if series == "requests":
                key = (tags.get("service", ""), tags.get("route", ""), tags.get("status_code", ""))
                count_key, class_key, keys = requests.get(key) or self._request_keys(key)
                counts[count_key] += 1.0
                counts[class_key] += 1.0
                seconds = fields.get("execution_time")
                if seconds is not None:
                    sum_key, buckets, bounds = keys
                    sums[sum_key] += seconds
                    sums[buckets[bisect_left(bounds, seconds)]] += 1.0
            elif series in ESTIMATORS:
                key = (series, tags.get("service", ""), tags.get("batch_size", ""))
                seconds = fields.get("execution_time")
                if seconds is not None:
                    _observe(sums, estimations.get(key) or self._estimation_keys(key), seconds)
            else:
                handle = by_series.get(series)
                if handle is not None:
                    handle(time_ns, tags, fields, counts, sums)
        files = self.files
        files.add(files.counts, counts)
        files.add(files.histograms, sums)
        if self._balances:
            self._write_balances()

    def _request_keys(self, key: tuple[str, str, str]) -> tuple[str, str, HistogramKeys]:
        service, route, status = key
        keys = with_room(self._requests)[key] = (
            self.files.key("request_count_total", service, (route, status)),
            self.files.key("responses_total", service, (route_method(route), status_class(status))),
            self._histogram("request_duration_seconds", service, (route,)),
        )
        return keys

    def _estimation_keys(self, key: tuple[str, str, str]) -> HistogramKeys:
        series, service, batch_size = key
        keys = with_room(self._estimations)[key] = self._histogram(
            "estimation_duration_seconds", service, (series, count_range(str(batch_size)))
        )
        return keys

    def _histogram(self, name: str, service: str, values: tuple[str, ...]) -> HistogramKeys:
        return self.files.histogram_keys(name, service, values, self._bounds[name])

    def _keys(self, key: tuple, make: Callable[[], Any]) -> Any:
        """The cached keys of ``key`` (``(series, tag values...)``), made by ``make``."""
        keys = self._cached.get(key)
        if keys is None:
            keys = with_room(self._cached)[key] = make()
        return keys

    def _error(self, time_ns: int, tags: Mapping, fields: Mapping, counts: _Sums, _: _Sums):
        values = tuple(tags.get(k, "") for k in ("route", "status_code", "error_code"))
        service = tags.get("service", "")
        counts[
            self._keys(
                ("errors", service, *values),
                lambda: self.files.key("errors_count_total", service, values),
            )
        ] += 1.0

    def _image_load(self, time_ns: int, tags: Mapping, fields: Mapping, _: _Sums, sums: _Sums):
        service, fmt = tags.get("service", ""), image_format(str(tags.get("format", "")))
        duration, size = self._keys(
            ("image_load", service, fmt),
            lambda: (
                self._histogram("image_load_duration_seconds", service, (fmt,)),
                self._histogram("image_load_size_bytes", service, (fmt,)),
            ),
        )
        seconds = fields.get("execution_time")
        if seconds is not None:
            _observe(sums, duration, seconds)
        size_bytes = fields.get("size")
        if size_bytes is not None:
            _observe(sums, size, size_bytes)

    def _sdkloop_task(self, time_ns: int, tags: Mapping, fields: Mapping, _: _Sums, sums: _Sums):
        service, count = tags.get("service", ""), str(tags.get("image_count", ""))
        seconds = fields.get("execution_time")
        if seconds is not None:
            keys = self._keys(
                ("sdkloop_task", service, count),
                lambda: self._histogram(
                    "sdkloop_task_duration_seconds", service, (count_range(count),)
                ),
            )
            _observe(sums, keys, seconds)

    def _usages(self, time_ns: int, tags: Mapping, fields: Mapping, counts: _Sums, _: _Sums):
        service = tags.get("service", "")
        keys = self._keys(("usages_statistic", service), lambda: self._usage_keys(service))
        for name, value in fields.items():
            if value:
                key = keys.get(name)
                if key is not None:
                    counts[key] += value

    def _usage_keys(self, service: str) -> dict[str, str]:
        """Every estimator's key; all 23 show from now on, unused ones as 0."""
        keys = {
            field: self.files.key("usages_total", service, (estimator,))
            for field, estimator in USAGE_FIELDS.items()
        }
        for key in keys.values():
            self.files.counts.read_value(key)
        return keys

    def _licensing(self, time_ns: int, tags: Mapping, fields: Mapping, counts: _Sums, _: _Sums):
        service, status = tags.get("service", ""), license_status(tags.get("license_status", ""))
        report, balance = self._keys(
            ("licensing", service, status),
            lambda: (
                self.files.key("license_reports_total", service, (status,)),
                self.files.key("liveness_balance", service, ()),
            ),
        )
        counts[report] += 1.0
        value = fields.get("liveness_balance")
        if value is not None:
            seconds = time_ns / 1e9
            if seconds >= self._balances.get(balance, (0.0, 0.0))[1]:
                self._balances[balance] = (float(value), seconds)

    def _write_balances(self) -> None:
        """The newest balance of this slice, unless the file holds a newer one."""
        file = self.files.gauges(_BALANCE_MODE)
        for key, (value, seconds) in self._balances.items():
            if seconds >= file.read_value(key)[1]:
                file.write_value(key, value, seconds)
        self._balances.clear()

    def exposition(self) -> bytes:
        """The merged metrics of all workers in the Prometheus text format."""
        return self.files.exposition()

    def close(self) -> None:
        """Close this worker's files (see :meth:`MetricFiles.close`); remove the directory if
        it was made for this worker alone."""
        self.files.close()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
