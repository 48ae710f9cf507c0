"""Prometheus exposition of the request metrics, summed over all workers.

Counters are updated in the background from the points the writer drains (a sink), never
on the request path. Each worker adds its totals to its own files in a multiprocess
directory, in prometheus-client's multiprocess file format, and the endpoint merges every
file of the directory with ``MultiProcessCollector``. The files are written with an explicit
path, so prometheus-client's import-time choice of value class (``values.ValueClass``,
decided by ``PROMETHEUS_MULTIPROC_DIR``) plays no part and no module-global registry is
used: each app has its own ``CollectorRegistry``.

The directory: a main process that spawns workers (Sanic's ``app.run(workers=N)``) creates
a temporary one with :func:`create_directory`, exported as ``PROMETHEUS_MULTIPROC_DIR``
before the workers are spawned, and removes it with :func:`remove_directory` when it stops.
A directory already given in ``PROMETHEUS_MULTIPROC_DIR`` is used as is and never removed
(metrics that the app's own code creates with prometheus-client in the workers then land
there and are served too). A single process without either (``single_process=True``,
``web.run_app``, test clients) makes its own and removes it when it stops. The adapters
serve :meth:`RequestMetrics.exposition` on ``prometheus.path``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from bisect import bisect_left
from collections.abc import Mapping

from .point import Point
from .settings import MonitoringConfigError, Settings

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
    from prometheus_client.utils import floatToGoString
except ImportError:  # the "prometheus" extra is not installed: setup_prometheus says so
    MmapedDict = None

ENV = "PROMETHEUS_MULTIPROC_DIR"
_DIR_PREFIX = "luna-monitoring-prometheus-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Face detection and descriptor extraction of one image take tens to hundreds of ms;
# batches and slow estimators take seconds.
DURATION_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
    float("inf"),
)  # fmt: skip
_REQUESTS = ("request_count", "Requests served.")
_ERRORS = ("errors_count", "Requests answered with status >= 400.")
_DURATION = ("request_duration_seconds", "Request execution time in seconds.")


class RequestMetrics:
    """This worker's request metrics; :meth:`feed` is the writer sink.

    Labels come from the points' tags: ``route`` is always a route template (or
    ``METHOD:__unmatched__``), so label sets stay bounded by the app's routes.
    """

    def __init__(
        self, directory: str, extra_labels: Mapping[str, str], *, owns_directory: bool = False
    ) -> None:
        self.directory = directory
        self._owns_directory = owns_directory
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=directory)
        # One file per type and instance; the type is the name's first "_"-separated part.
        name = f"luna-{os.getpid()}-{uuid.uuid4().hex[:8]}.db"
        self._counters = MmapedDict(os.path.join(directory, f"counter_{name}"))
        self._histograms = MmapedDict(os.path.join(directory, f"histogram_{name}"))
        self._extra_names = tuple(extra_labels)
        self._extra_values = tuple(extra_labels.values())
        self._counter_keys: dict[tuple, str] = {}
        self._histogram_keys: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}

    def feed(self, points: list[Point]) -> None:
        """Count the ``requests`` and ``errors`` points among ``points``.

        Sums are made in memory; each changed value is written to the file once per call.
        """
        counts: dict[str, float] = {}
        durations: dict[str, float] = {}
        for series, _, tags, fields in points:
            if series == "requests":
                labels = (tags.get("service", ""), tags.get("route", ""))
                key = self._counter_key(_REQUESTS, (*labels, tags.get("status_code", "")))
                counts[key] = counts.get(key, 0.0) + 1.0
                seconds = fields.get("execution_time")
                if seconds is not None:
                    key, bucket_keys = self._duration_keys(labels)
                    durations[key] = durations.get(key, 0.0) + seconds
                    key = bucket_keys[bisect_left(DURATION_BUCKETS_S, seconds)]
                    durations[key] = durations.get(key, 0.0) + 1.0
            elif series == "errors":
                labels = tuple(tags.get(k, "") for k in ("service", "route", "status_code"))
                key = self._counter_key(_ERRORS, (*labels, tags.get("error_code", "0")))
                counts[key] = counts.get(key, 0.0) + 1.0
        _add(self._counters, counts)
        _add(self._histograms, durations)

    def _counter_key(self, metric: tuple[str, str], values: tuple[str, ...]) -> str:
        key = self._counter_keys.get((metric, values))
        if key is None:
            names = ("service", "route", "status_code", "error_code")[: len(values)]
            key = self._counter_keys[metric, values] = mmap_key(
                metric[0],
                f"{metric[0]}_total",
                (*names, *self._extra_names),
                (*values, *self._extra_values),
                metric[1],
            )
        return key

    def _duration_keys(self, values: tuple[str, str]) -> tuple[str, tuple[str, ...]]:
        keys = self._histogram_keys.get(values)
        if keys is None:
            name, doc = _DURATION
            names = ("service", "route", *self._extra_names)
            label_values = (*values, *self._extra_values)
            buckets = tuple(
                mmap_key(
                    name, f"{name}_bucket", (*names, "le"), (*label_values, floatToGoString(b)), doc
                )
                for b in DURATION_BUCKETS_S
            )
            keys = self._histogram_keys[values] = (
                mmap_key(name, f"{name}_sum", names, label_values, doc),
                buckets,
            )
            for key in buckets:  # every bucket is exposed, empty ones as 0
                self._histograms.read_value(key)
        return keys

    def exposition(self) -> bytes:
        """The merged metrics of all workers in the Prometheus text format."""
        return generate_latest(self.registry)

    def close(self) -> None:
        """Close this worker's files, whose totals stay for the other workers, and mark the
        process dead; remove the directory if it was made for this worker alone."""
        self._counters.close()
        self._histograms.close()
        mark_process_dead(os.getpid(), self.directory)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _add(values: MmapedDict, amounts: dict[str, float]) -> None:
    for key, amount in amounts.items():
        value, _ = values.read_value(key)
        values.write_value(key, value + amount, 0.0)


def require_client(settings: Settings) -> None:
    """With ``prometheus.enabled``: :class:`MonitoringConfigError` unless prometheus-client is
    installed."""
    if settings.prometheus.enabled and MmapedDict is None:
        raise MonitoringConfigError(
            "MONITORING['prometheus']: enabled needs prometheus-client; "
            "install luna-monitoring[prometheus]"
        )


def is_metrics_path(settings: Settings, route: str) -> bool:
    """Whether ``route`` (``METHOD:/template``) is the metrics endpoint: it emits no points."""
    prometheus = settings.prometheus
    return prometheus.enabled and route.partition(":")[2] == prometheus.path


def open_metrics(settings: Settings) -> RequestMetrics | None:
    """This worker's :class:`RequestMetrics` (``None`` when disabled), in the directory of
    ``PROMETHEUS_MULTIPROC_DIR``, else in one of its own."""
    if not settings.prometheus.enabled:
        return None
    given = os.environ.get(ENV)  # None in a single process: no main process made one
    return RequestMetrics(
        given or tempfile.mkdtemp(prefix=_DIR_PREFIX),
        settings.prometheus.extra_labels,
        owns_directory=given is None,
    )


def create_directory() -> str | None:
    """In a main process, before workers are spawned: a directory for them, exported as
    ``PROMETHEUS_MULTIPROC_DIR``, unless one is given; the one made (to remove) or ``None``."""
    made = None if ENV in os.environ else tempfile.mkdtemp(prefix=_DIR_PREFIX)
    if made:
        os.environ[ENV] = made
    return made


def remove_directory(made: str | None) -> None:
    """In the main process, once the workers are gone: remove the directory it made."""
    if made:
        os.environ.pop(ENV, None)
        shutil.rmtree(made, ignore_errors=True)
