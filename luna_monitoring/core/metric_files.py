"""One worker's metric files in prometheus-client's multiprocess format, and their merge.

Each worker writes its own files (one per type, and per multiprocess mode for gauges) in a
shared directory; :meth:`MetricFiles.exposition` merges every file of the directory with
``MultiProcessCollector``, whichever worker calls it. Files are opened with an explicit
path, so prometheus-client's import-time choice of value class plays no part, and each
instance has its own ``CollectorRegistry``. A file name's first ``_``-separated part is the
type, a gauge's second its mode; prometheus-client reads the rest as the process id.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

from .metric_families import COUNTER, FAMILIES, GAUGE, HISTOGRAM, Family

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
    from prometheus_client.utils import floatToGoString
except ImportError:  # the "prometheus" extra is not installed: setup_prometheus says so
    MmapedDict = None

FAMILY = {family.name: family for family in FAMILIES}
INF = float("inf")
HistogramKeys = tuple[str, tuple[str, ...], tuple[float, ...]]
"""``(sum key, bucket keys, bucket bounds with +Inf)`` of one histogram label set."""
_LIVE = "live"


class MetricFiles:
    """The metric files of one worker; keys carry ``service`` and the extra labels.

    >>> files = MetricFiles(directory, {"dc": "eu"})
    >>> files.add(files.counts, {files.key("usages_total", "svc", ("face_detector",)): 3.0})
    """

    def __init__(self, directory: str, extra_labels: Mapping[str, str]) -> None:
        self.directory = directory
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=directory)
        self._name = f"luna-{os.getpid()}-{uuid.uuid4().hex[:8]}.db"
        self.counts = self._open(COUNTER)
        self.histograms = self._open(HISTOGRAM)
        self._gauges: dict[str, MmapedDict] = {}
        self._extra_names = tuple(extra_labels)
        self._extra_values = tuple(extra_labels.values())
        self._totals: dict[str, float] = {}

    def _open(self, kind: str) -> MmapedDict:
        return MmapedDict(os.path.join(self.directory, f"{kind}_{self._name}"))

    def gauges(self, mode: str) -> MmapedDict:
        """The file of the gauges of multiprocess ``mode`` (opened when first needed)."""
        file = self._gauges.get(mode)
        if file is None:
            file = self._gauges[mode] = self._open(f"{GAUGE}_{mode}")
        return file

    def key(
        self, name: str, service: str, values: tuple[str, ...], sample: str | None = None
    ) -> str:
        """The file key of family ``name``'s sample (``sample``: a histogram's ``_sum`` ...)."""
        family = FAMILY[name]
        metric = name.removesuffix("_total") if family.kind == COUNTER else name
        return self._key(family, metric, sample or name, (service, *values))

    def _key(
        self, family: Family, metric: str, sample: str, values: tuple, le: str | None = None
    ) -> str:
        names, labels = (
            ("service", *family.labels, *self._extra_names),
            (*values, *self._extra_values),
        )
        if le is not None:  # a histogram bucket
            names, labels = (*names, "le"), (*labels, le)
        return mmap_key(metric, sample, names, labels, family.doc)

    def histogram_keys(
        self, name: str, service: str, values: tuple[str, ...], bounds: tuple[float, ...]
    ) -> HistogramKeys:
        """The keys of one label set of histogram ``name``; its buckets show from now on,
        empty ones as 0 (``bounds`` end with +Inf)."""
        family, labels = FAMILY[name], (service, *values)
        buckets = tuple(
            self._key(family, name, f"{name}_bucket", labels, floatToGoString(bound))
            for bound in bounds
        )
        for key in buckets:
            self.histograms.read_value(key)
        return self.key(name, service, values, f"{name}_sum"), buckets, bounds

    def add(self, file: MmapedDict, amounts: Mapping[str, float]) -> None:
        """Add each amount to its key's value (kept in memory too: this worker alone writes
        its files, so a value is never read back)."""
        totals = self._totals
        for key, amount in amounts.items():
            total = totals[key] = totals.get(key, 0.0) + amount
            file.write_value(key, total, 0.0)

    def exposition(self) -> bytes:
        """The merged metrics of all workers in the Prometheus text format."""
        return generate_latest(self.registry)

    def close(self) -> None:
        """Close this worker's files; remove its ``live*`` gauges (they count live workers
        only) and prometheus-client's own of this process. Counters and the other gauges
        stay for the other workers."""
        for file in (self.counts, self.histograms, *self._gauges.values()):
            file.close()
        for mode in self._gauges:
            if mode.startswith(_LIVE):
                os.remove(os.path.join(self.directory, f"{GAUGE}_{mode}_{self._name}"))
        mark_process_dead(os.getpid(), self.directory)
