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
from types import MappingProxyType

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
from .metric_files import FAMILY, INF, HistogramKeys, MetricFiles
from .point import Point

_Sums = defaultdict[str, float]
_BALANCE_MODE = FAMILY["liveness_balance"].mode
# What a point's keys tuple starts with: how its fields are counted.
_REQUEST, _TIMED, _COUNTED, _IMAGE, _USAGES, _LICENSING = range(6)
_TAGS = {  # series -> the tags its label values come from
    "requests": ("service", "route", "status_code"),
    "errors": ("service", "route", "status_code", "error_code"),
    "image_load": ("service", "format"),
    "sdkloop_task": ("service", "image_count"),
    "usages_statistic": ("service",),
    "licensing": ("service", "license_status"),
} | dict.fromkeys(ESTIMATORS, ("service", "batch_size"))


class PointMetrics:
    """This worker's metrics from its points; :meth:`feed` is the writer sink.

    >>> metrics = PointMetrics(directory, {"dc": "eu"})
    >>> metrics.feed(points)
    >>> metrics.exposition()  # every worker's metrics of the directory, merged

    The keys of a tag set are cached by its values (bounded) and, for the read-only tag
    mappings that the request hooks and the collector share between points, by identity.
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
        self._shared: dict[str, dict[int, tuple[Mapping, tuple]]] = {s: {} for s in _TAGS}
        self._cached: dict[tuple, tuple] = {}
        self._make: dict[str, Callable[..., tuple]] = {
            "requests": self._request_keys,
            "errors": self._error_keys,
            "image_load": self._image_keys,
            "sdkloop_task": self._sdkloop_keys,
            "usages_statistic": self._usage_keys,
            "licensing": self._licensing_keys,
        } | dict.fromkeys(ESTIMATORS, self._estimation_keys)
        self._balances: dict[str, tuple[int, float]] = {}  # key: newest (time_ns, value)
        self._new_balances: set[str] = set()

    def feed(self, points: list[Point]) -> None:
        """Count, sum and observe what ``points`` hold; other series are ignored."""
        counts: _Sums = defaultdict(float)
        sums: _Sums = defaultdict(float)
        by_series = self._shared
        bisect = bisect_left
        for series, time_ns, tags, fields in points:
            shared = by_series.get(series)
            if shared is None:
                continue
            entry = shared.get(id(tags))
            keys = entry[1] if entry is not None and entry[0] is tags else self._keys(series, tags)
            kind = keys[0]
            if kind is _TIMED:
                seconds = fields.get("execution_time")
                if seconds is not None:
                    sums[keys[1]] += seconds
                    sums[keys[2][bisect(keys[3], seconds)]] += 1.0
            elif kind is _REQUEST:
                counts[keys[1]] += 1.0
                counts[keys[2]] += 1.0
                seconds = fields.get("execution_time")
                if seconds is not None:
                    sums[keys[3]] += seconds
                    sums[keys[4][bisect(keys[5], seconds)]] += 1.0
            elif kind is _USAGES:
                usage_keys = keys[1]
                for name, value in fields.items():
                    if value and name in usage_keys:
                        counts[usage_keys[name]] += value
            elif kind is _COUNTED:
                counts[keys[1]] += 1.0
            elif kind is _IMAGE:
                seconds, size = fields.get("execution_time"), fields.get("size")
                if seconds is not None:
                    sums[keys[1]] += seconds
                    sums[keys[2][bisect(keys[3], seconds)]] += 1.0
                if size is not None:
                    sums[keys[4]] += size
                    sums[keys[5][bisect(keys[6], size)]] += 1.0
            else:
                self._licensing(keys, time_ns, fields, counts)
        files = self.files
        files.add(files.counts, counts)
        files.add(files.histograms, sums)
        if self._new_balances:
            self._write_balances()

    def _keys(self, series: str, tags: Mapping) -> tuple:
        """The keys of a tag set not met before (by identity); ``(kind, keys...)``."""
        values = (series, *(str(tags.get(name, "")) for name in _TAGS[series]))
        keys = self._cached.get(values)
        if keys is None:
            keys = with_room(self._cached)[values] = self._make[series](*values)
        if type(tags) is MappingProxyType:  # kept alive by the entry: its id stays its own
            with_room(self._shared[series])[id(tags)] = (tags, keys)
        return keys

    def _histogram(self, name: str, service: str, values: tuple[str, ...]) -> HistogramKeys:
        return self.files.histogram_keys(name, service, values, self._bounds[name])

    def _request_keys(self, _: str, service: str, route: str, status: str) -> tuple:
        return (
            _REQUEST,
            self.files.key("request_count_total", service, (route, status)),
            self.files.key("responses_total", service, (route_method(route), status_class(status))),
            *self._histogram("request_duration_seconds", service, (route,)),
        )

    def _error_keys(self, _: str, service: str, *values: str) -> tuple:
        return _COUNTED, self.files.key("errors_count_total", service, values)

    def _estimation_keys(self, series: str, service: str, batch_size: str) -> tuple:
        name = "estimation_duration_seconds"
        return _TIMED, *self._histogram(name, service, (series, count_range(batch_size)))

    def _sdkloop_keys(self, _: str, service: str, image_count: str) -> tuple:
        name = "sdkloop_task_duration_seconds"
        return _TIMED, *self._histogram(name, service, (count_range(image_count),))

    def _image_keys(self, _: str, service: str, fmt: str) -> tuple:
        labels = (image_format(fmt),)
        return (
            _IMAGE,
            *self._histogram("image_load_duration_seconds", service, labels),
            *self._histogram("image_load_size_bytes", service, labels),
        )

    def _usage_keys(self, _: str, service: str) -> tuple:
        """Every estimator's key; all 23 show from now on, unused ones as 0."""
        keys = {
            field: self.files.key("usages_total", service, (estimator,))
            for field, estimator in USAGE_FIELDS.items()
        }
        for key in keys.values():
            self.files.counts.read_value(key)
        return _USAGES, keys

    def _licensing_keys(self, _: str, service: str, status: str) -> tuple:
        return (
            _LICENSING,
            self.files.key("license_reports_total", service, (license_status(status),)),
            self.files.key("liveness_balance", service, ()),
        )

    def _licensing(self, keys: tuple, time_ns: int, fields: Mapping, counts: _Sums) -> None:
        _, report, balance = keys
        counts[report] += 1.0
        value = fields.get("liveness_balance")
        if value is not None and time_ns >= self._balances.get(balance, (time_ns, 0.0))[0]:
            self._balances[balance] = (time_ns, float(value))
            self._new_balances.add(balance)

    def _write_balances(self) -> None:
        """The newest balance this worker saw, timestamped with its point's time."""
        file = self.files.gauges(_BALANCE_MODE)
        for key in self._new_balances:
            time_ns, value = self._balances[key]
            file.write_value(key, value, time_ns / 1e9)
        self._new_balances.clear()

    def exposition(self) -> bytes:
        """The merged metrics of all workers in the Prometheus text format."""
        return self.files.exposition()

    def close(self) -> None:
        """Close this worker's files (see :meth:`MetricFiles.close`); remove the directory if
        it was made for this worker alone."""
        self.files.close()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
