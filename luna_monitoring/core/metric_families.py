"""The Prometheus metric families, declared once as data, and the bounded label values.

Every family carries ``service`` and the configured ``extra_labels`` besides the labels
listed here. Label values that come from points are mapped into small fixed sets
(:func:`count_range`, :func:`image_format`, :func:`status_class`, ...), so hostile tag
values add a bounded number of label sets. This module needs no prometheus-client: the
settings read the histogram names and default buckets from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from .schema import ESTIMATOR_SERIES, USAGE_ESTIMATORS

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


class Family(NamedTuple):
    """One metric family: exposed name, type, labels besides ``service`` and extra labels."""

    name: str
    kind: str
    labels: tuple[str, ...]
    doc: str
    source: str
    mode: str = ""
    """Multiprocess mode of a gauge (how the workers' values combine)."""


# Chosen from the demo's measured spreads (README "Prometheus": requests 0.1..200 ms, SDK work
# of a request 2..150 ms, image decoding 3 us..55 ms, images 5..260 KB, the stand-in
# estimators 2 us..40 ms) and reaching to what real SDK estimators take (tens to hundreds
# of ms per image, seconds per batch).
DURATION_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
ESTIMATION_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
IMAGE_LOAD_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
IMAGE_SIZE_BUCKETS_BYTES = tuple(float(4096 << n) for n in range(13))  # 4 KiB .. 16 MiB
SDKLOOP_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

FAMILIES: tuple[Family, ...] = (
    Family("request_count_total", COUNTER, ("route", "status_code"), "Requests served.",
           "every `requests` point"),
    Family("errors_count_total", COUNTER, ("route", "status_code", "error_code"),
           "Requests answered with status >= 400.", "every `errors` point"),
    Family("request_duration_seconds", HISTOGRAM, ("route",),
           "Request execution time in seconds.", "`execution_time` of `requests` points"),
    Family("responses_total", COUNTER, ("method", "status_class"),
           "Responses by HTTP method and status class.", "every `requests` point"),
    Family("estimation_duration_seconds", HISTOGRAM, ("series", "batch_size"),
           "Execution time of one SDK estimation (batch) in seconds.",
           "`execution_time` of the 38 estimator series"),
    Family("image_load_duration_seconds", HISTOGRAM, ("format",),
           "Time to load one image in seconds.", "`execution_time` of `image_load`"),
    Family("image_load_size_bytes", HISTOGRAM, ("format",), "Size of a loaded image in bytes.",
           "`size` of `image_load`"),
    Family("sdkloop_task_duration_seconds", HISTOGRAM, ("image_count",),
           "Execution time of a request's SDK work in seconds.",
           "`execution_time` of `sdkloop_task`"),
    Family("usages_total", COUNTER, ("estimator",), "Estimator usages.",
           "the `*_usages` fields of `usages_statistic`"),
    Family("liveness_balance", GAUGE, (), "Liveness balance of the latest licence report.",
           "`liveness_balance` of the newest `licensing` point of any worker", "mostrecent"),
    Family("license_reports_total", COUNTER, ("status",), "Licence warning and error reports.",
           "every `licensing` point (`license_status`)"),
    Family("monitoring_points_buffered", GAUGE, (), "Points held in memory, not yet written.",
           "writer stats, summed over live workers", "livesum"),
    Family("monitoring_points_written_total", COUNTER, (), "Points written to the database.",
           "writer stats"),
    Family("monitoring_points_dropped_total", COUNTER, (), "Points dropped: buffer full.",
           "writer stats"),
    Family("monitoring_points_rejected_total", COUNTER, (),
           "Points the database refused as bad data or too large.", "writer stats"),
    Family("monitoring_write_errors_total", COUNTER, (), "Failed database writes.",
           "writer stats"),
    Family("monitoring_write_retries_total", COUNTER, (), "Database writes that were retries.",
           "writer stats"),
    Family("monitoring_plugin_errors_total", COUNTER, ("plugin",),
           "Plugin calls that raised.", "plugin runner"),
    Family("monitoring_plugin_timeouts_total", COUNTER, ("plugin",),
           "Plugin calls cancelled after plugin_timeout_s.", "plugin runner"),
    Family("monitoring_plugin_points_dropped_total", COUNTER, ("plugin",),
           "Points a plugin did not get: its queue was full, or left at shutdown.",
           "plugin runner"),
    Family("monitoring_last_write_timestamp_seconds", GAUGE, (),
           "Unix time a write last stored points.", "writer stats, newest of all workers",
           "max"),
)  # fmt: skip
"""Every family, in the README's order."""

DEFAULT_BUCKETS: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "request_duration_seconds": DURATION_BUCKETS_S,
        "estimation_duration_seconds": ESTIMATION_BUCKETS_S,
        "image_load_duration_seconds": IMAGE_LOAD_BUCKETS_S,
        "image_load_size_bytes": IMAGE_SIZE_BUCKETS_BYTES,
        "sdkloop_task_duration_seconds": SDKLOOP_BUCKETS_S,
    }
)
"""Upper bounds of each histogram's buckets (``+Inf`` is always added); configurable."""

ESTIMATORS = frozenset(ESTIMATOR_SERIES)
USAGE_FIELDS = {f"{name}_usages": name for name in USAGE_ESTIMATORS}
"""``usages_statistic`` field -> ``estimator`` label."""
IMAGE_FORMATS = frozenset(
    ("BMP", "GIF", "JPEG", "JPEG2000", "PNG", "PPM", "PGM", "TGA", "TIFF", "WEBP")
)
"""``format`` values kept (upper-cased); any other is ``other``."""
HTTP_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
"""``method`` values kept; any other is ``OTHER``."""
LICENSE_STATUSES = frozenset(("warning", "error"))
OTHER = "other"
MAX_COUNT_LABEL = 256
"""Counts above this share the label ``257+``."""


def count_range(value: str) -> str:
    """The label of a count tag (``batch_size``, ``image_count``): ``0``, ``1``, ``2``,
    then powers of two as ranges ``3-4``, ``5-8``, ... ``129-256``, then ``257+``; a value
    that is not a decimal integer is ``other``. 12 values in all.

    >>> [count_range(v) for v in ("1", "3", "16", "17", "1000", "x")]
    ['1', '3-4', '9-16', '17-32', '257+', 'other']
    """
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        return OTHER
    count = int(value)
    if count <= 2:
        return str(count)
    if count > MAX_COUNT_LABEL:
        return f"{MAX_COUNT_LABEL + 1}+"
    high = 1 << (count - 1).bit_length()
    return f"{high // 2 + 1}-{high}"


def image_format(value: str) -> str:
    """``value`` upper-cased if it is a known image format, else ``other``."""
    upper = value.upper()
    return upper if upper in IMAGE_FORMATS else OTHER


def status_class(status_code: str) -> str:
    """``2xx`` for ``"204"``; ``other`` for anything that is not a status code 100..599."""
    digits = len(status_code) == 3 and status_code.isascii() and status_code.isdigit()
    return f"{status_code[0]}xx" if digits and "1" <= status_code[0] <= "5" else OTHER


def route_method(route: str) -> str:
    """The method of a ``METHOD:/template`` route, ``OTHER`` if it is no HTTP method."""
    method = route.partition(":")[0]
    return method if method in HTTP_METHODS else "OTHER"


def license_status(value: str) -> str:
    """``warning`` or ``error``; ``other`` for anything else."""
    return value if value in LICENSE_STATUSES else OTHER


def families_table() -> str:
    """The README's table of the families (Markdown)."""
    lines = [
        "| metric | type | labels (besides `service` and `extra_labels`) | from |",
        "|---|---|---|---|",
    ]
    for family in FAMILIES:
        kind = f"{family.kind} ({family.mode})" if family.mode else family.kind
        labels = ", ".join(f"`{label}`" for label in family.labels) or "—"
        lines.append(f"| `{family.name}` | {kind} | {labels} | {family.source} |")
    return "\n".join(lines) + "\n"
