"""PointMetrics: the exact exposition of every family fed from points, workers merged,
label sets bounded under hostile tag values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from luna_monitoring.core.metric_families import (
    DEFAULT_BUCKETS,
    FAMILIES,
    MAX_COUNT_LABEL,
    USAGE_FIELDS,
    count_range,
    families_table,
)
from luna_monitoring.core.point import Point
from luna_monitoring.core.point_metrics import PointMetrics
from luna_monitoring.core.schema import ESTIMATOR_SERIES

SERVICE = "luna-remote-sdk"
S = f'service="{SERVICE}"'
BUCKETS = {
    "request_duration_seconds": (0.1,),
    "estimation_duration_seconds": (0.01, 0.1),
    "image_load_duration_seconds": (0.01,),
    "image_load_size_bytes": (1000.0, 100000.0),
    "sdkloop_task_duration_seconds": (0.1,),
}


def point(series: str, tags: dict, fields: dict, time_ns: int = 1) -> Point:
    return Point(series, time_ns, {"service": SERVICE, **tags}, fields)


def estimation(series: str, batch_size: str, seconds: float) -> Point:
    return point(series, {"batch_size": batch_size}, {"execution_time": seconds})


def image_load(fmt: str, seconds: float, size: int) -> Point:
    tags = {"format": fmt, "exif": "True", "autorotated": "False"}
    return point("image_load", tags, {"execution_time": seconds, "size": size})


def licensing(status: str, balance: int, time_ns: int) -> Point:
    return point("licensing", {"license_status": status}, {"liveness_balance": balance}, time_ns)


def request(route: str, status: str, seconds: float = 0.01) -> Point:
    tags = {"route": route, "status_code": status}
    return point("requests", tags, {"request_id": "r", "execution_time": seconds})


def line(name: str, value: float, **labels: str) -> str:
    """One exposition line: labels sorted, ``service`` included."""
    text = ",".join(f'{k}="{v}"' for k, v in sorted({"service": SERVICE, **labels}.items()))
    return f"{name}{{{text}}} {float(value)!r}"


def histogram(name: str, bounds: dict[str, int], total: float, **labels: str) -> list[str]:
    """The lines of one histogram label set: cumulative ``bounds`` counts, count, sum."""
    count = max(bounds.values())
    return [
        *(line(f"{name}_bucket", n, le=le, **labels) for le, n in bounds.items()),
        line(f"{name}_count", count, **labels),
        line(f"{name}_sum", total, **labels),
    ]


def lines_of(text: str, family: str) -> list[str]:
    """The sample lines of ``family`` (its ``_sum``, ``_bucket``, ``_count`` too), sorted."""
    pattern = re.compile(rf"^{family}(_sum|_bucket|_count)?{{")
    return sorted(line for line in text.splitlines() if pattern.match(line))


@pytest.fixture
def metrics(tmp_path: Path):
    """``metrics(extra_labels={})`` -> a PointMetrics on ``tmp_path`` with small buckets."""
    made: list[PointMetrics] = []

    def factory(extra_labels: dict | None = None) -> PointMetrics:
        made.append(PointMetrics(str(tmp_path), extra_labels or {}, buckets=BUCKETS))
        return made[-1]

    yield factory
    for instance in made:
        instance.close()


def fed(metrics: PointMetrics, points: list[Point]) -> str:
    metrics.feed(points)
    return metrics.exposition().decode()


class TestFamilies:
    def test_estimation_duration_seconds(self, metrics):
        """One histogram per series and batch size range; execution_time observed."""
        text = fed(
            metrics(),
            [
                estimation("face_detection", "1", 0.005),
                estimation("face_detection", "1", 0.05),
                estimation("face_detection", "4", 0.5),
                estimation("livenessv1", "3", 0.001),
            ],
        )
        name, face, live = "estimation_duration_seconds", "face_detection", "livenessv1"
        assert lines_of(text, name) == sorted(
            histogram(name, {"0.01": 1, "0.1": 2, "+Inf": 2}, 0.055, batch_size="1", series=face)
            + histogram(name, {"0.01": 0, "0.1": 0, "+Inf": 1}, 0.5, batch_size="3-4", series=face)
            + histogram(
                name, {"0.01": 1, "0.1": 1, "+Inf": 1}, 0.001, batch_size="3-4", series=live
            )
        )

    def test_image_load_duration_seconds_and_size_bytes(self, metrics):
        """Per format (upper-cased when known); duration and size each a histogram."""
        text = fed(
            metrics(),
            [
                image_load("JPEG", 0.002, 500),
                image_load("jpeg", 0.02, 50000),
                image_load("PNG", 0.003, 200000),
            ],
        )
        name = "image_load_duration_seconds"
        assert lines_of(text, name) == sorted(
            histogram(name, {"0.01": 1, "+Inf": 2}, 0.022, format="JPEG")
            + histogram(name, {"0.01": 1, "+Inf": 1}, 0.003, format="PNG")
        )
        name = "image_load_size_bytes"
        assert lines_of(text, name) == sorted(
            histogram(name, {"1000.0": 1, "100000.0": 2, "+Inf": 2}, 50500, format="JPEG")
            + histogram(name, {"1000.0": 0, "100000.0": 0, "+Inf": 1}, 200000, format="PNG")
        )

    def test_sdkloop_task_duration_seconds(self, metrics):
        """Per image_count range; ``0`` (SDK work without images) is its own label."""
        tasks = [("0", 0.01), ("1", 0.05), ("1", 0.2), ("7", 0.3)]
        text = fed(
            metrics(),
            [point("sdkloop_task", {"image_count": n}, {"execution_time": s}) for n, s in tasks],
        )
        name = "sdkloop_task_duration_seconds"
        assert lines_of(text, name) == sorted(
            histogram(name, {"0.1": 1, "+Inf": 1}, 0.01, image_count="0")
            + histogram(name, {"0.1": 1, "+Inf": 2}, 0.25, image_count="1")
            + histogram(name, {"0.1": 0, "+Inf": 1}, 0.3, image_count="5-8")
        )

    def test_usages_total(self, metrics):
        """Every ``*_usages`` field summed per estimator; all 23 shown, unused ones as 0."""
        zero = dict.fromkeys(USAGE_FIELDS, 0)
        text = fed(
            metrics(),
            [
                point("usages_statistic", {}, zero | {"face_detector_usages": 2}),
                point("usages_statistic", {}, zero | {"face_detector_usages": 3}),
                point("usages_statistic", {}, zero | {"liveness_estimator_usages": 1}),
            ],
        )
        expected = {name: 0.0 for name in USAGE_FIELDS.values()}
        expected |= {"face_detector": 5.0, "liveness_estimator": 1.0}
        assert lines_of(text, "usages_total") == sorted(
            f'usages_total{{estimator="{name}",{S}}} {value}' for name, value in expected.items()
        )

    def test_license_reports_total(self, metrics):
        """Per status; a status that is neither warning nor error counts as ``other``."""
        text = fed(
            metrics(),
            [
                licensing("warning", 30, 1),
                licensing("warning", 20, 2),
                licensing("error", 0, 3),
                licensing('bad"\n', 5, 4),
            ],
        )
        assert lines_of(text, "license_reports_total") == [
            f'license_reports_total{{{S},status="error"}} 1.0',
            f'license_reports_total{{{S},status="other"}} 1.0',
            f'license_reports_total{{{S},status="warning"}} 2.0',
        ]

    def test_liveness_balance_is_the_newest_report(self, metrics):
        """The balance of the newest licensing point, whatever order points come in."""
        one = metrics()
        second = 1_700_000_000 * 10**9
        text = fed(one, [licensing("warning", 7, second + 5), licensing("warning", 9, second)])
        assert lines_of(text, "liveness_balance") == [f"liveness_balance{{{S}}} 7.0"]
        text = fed(one, [licensing("warning", 12, second + 1)])  # older than what it holds
        assert lines_of(text, "liveness_balance") == [f"liveness_balance{{{S}}} 7.0"]

    def test_liveness_balance_newest_over_workers(self, metrics):
        """Two workers: the newest report of either, not a sum."""
        first, second = metrics(), metrics()
        base = 1_700_000_000 * 10**9
        first.feed([licensing("warning", 15, base + 10**9)])
        second.feed([licensing("error", 0, base + 3 * 10**9)])
        first.feed([licensing("warning", 14, base + 2 * 10**9)])
        for worker in (first, second):
            text = worker.exposition().decode()
            assert lines_of(text, "liveness_balance") == [f"liveness_balance{{{S}}} 0.0"]

    def test_responses_total(self, metrics):
        """Per method and status class; request_count_total keeps its labels."""
        text = fed(
            metrics(),
            [
                request(route, status)
                for route, status in (
                    ("GET:/a", "200"),
                    ("GET:/b", "204"),
                    ("POST:/a", "404"),
                    ("POST:/a", "503"),
                    ("OTHER:__unmatched__", "400"),
                    ("BREW:/pot", "418"),
                    ("GET:/a", "99"),
                )
            ],
        )
        assert lines_of(text, "responses_total") == [
            f'responses_total{{method="GET",{S},status_class="2xx"}} 2.0',
            f'responses_total{{method="GET",{S},status_class="other"}} 1.0',
            f'responses_total{{method="OTHER",{S},status_class="4xx"}} 2.0',
            f'responses_total{{method="POST",{S},status_class="4xx"}} 1.0',
            f'responses_total{{method="POST",{S},status_class="5xx"}} 1.0',
        ]
        assert f'request_count_total{{route="GET:/b",{S},status_code="204"}} 1.0' in text

    def test_other_series_are_ignored(self, metrics):
        """Series no family is fed from add nothing."""
        text = fed(metrics(), [point("my_series", {"x": "1"}, {"value": 1.0})])
        assert text == ""

    def test_extra_labels_and_escaping_on_every_family(self, metrics):
        """Extra labels on every sample; quotes, backslashes, line breaks and unicode in a
        label value are escaped as the text format requires."""
        service = 'sdk "eu"\\ \n фото'
        points = [
            request("GET:/", "500"),
            point("errors", {"route": "GET:/", "status_code": "500", "error_code": "0"}, {}),
            estimation("mask", "2", 0.1),
            image_load("PNG", 0.1, 10),
            point("sdkloop_task", {"image_count": "1"}, {"execution_time": 0.1}),
            point("usages_statistic", {}, {"mask_estimator_usages": 1}),
            licensing("warning", 3, 10**18),
        ]
        text = fed(
            metrics({"region": "eu", "node": "n1"}),
            [p._replace(tags={**p.tags, "service": service}) for p in points],
        )
        samples = [line for line in text.splitlines() if not line.startswith("#")]
        names = {
            line.split("{")[0].removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            for line in samples
        }
        assert names == {f.name for f in FAMILIES if not f.name.startswith("monitoring_")}
        escaped = 'service="sdk \\"eu\\"\\\\ \\n фото"'
        for sample in samples:
            assert 'node="n1"' in sample and 'region="eu"' in sample and escaped in sample


class TestWorkers:
    def test_workers_are_summed(self, metrics):
        """Three workers' counters and histograms add up; a stopped worker's stay."""
        workers = [metrics() for _ in range(3)]
        for n, worker in enumerate(workers, start=1):
            worker.feed(
                [estimation("mask", "1", 0.05), image_load("JPEG", 0.001, 10)] * n
                + [point("usages_statistic", {}, {"mask_estimator_usages": n})]
            )
        workers[0].close()
        for worker in workers[1:]:
            text = worker.exposition().decode()
            assert (
                f'estimation_duration_seconds_count{{batch_size="1",series="mask",{S}}} 6.0' in text
            )
            assert f'image_load_size_bytes_sum{{format="JPEG",{S}}} 60.0' in text
            assert f'usages_total{{estimator="mask_estimator",{S}}} 6.0' in text  # fmt: skip


class TestCardinality:
    def test_thousand_distinct_tag_values_add_bounded_label_sets(self, metrics):
        """1,000 distinct batch sizes, image counts, formats, statuses and routes' methods:
        at most 12 batch-size and image-count ranges, 11 formats, 3 statuses."""
        one = metrics()
        hostile = [f"{n}" for n in range(1, 501)] + [f"x{n}\n\"'" for n in range(500)]
        points = []
        for n, value in enumerate(hostile):
            points += [
                estimation("face_detection", value, 0.01),
                point("sdkloop_task", {"image_count": value}, {"execution_time": 0.01}),
                image_load(value, 0.01, 10),
                licensing(value, n, n + 1),
                request(f"{value}:__unmatched__", value),
            ]
        for start in range(0, len(points), 1000):  # drained slices, as the writer does
            one.feed(points[start : start + 1000])
        text = one.exposition().decode()

        def label_values(family: str, label: str) -> set[str]:
            return {
                re.search(rf'{label}="([^"]*)"', line)[1]
                for line in lines_of(text, family)
                if "_count{" in line or "_total{" in line
            }

        ranges = {"1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65-128", "129-256"}
        ranges |= {"257+", "other"}
        assert label_values("estimation_duration_seconds", "batch_size") == ranges
        assert label_values("sdkloop_task_duration_seconds", "image_count") == ranges
        assert label_values("image_load_duration_seconds", "format") == {"other"}
        assert label_values("license_reports_total", "status") == {"other"}
        assert label_values("responses_total", "method") == {"OTHER"}
        classes = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
        assert label_values("responses_total", "status_class") == classes
        counts = [
            float(sample.rsplit(" ", 1)[1])
            for sample in lines_of(text, "estimation_duration_seconds")
            if "_count{" in sample
        ]
        assert sum(counts) == len(hostile)


class TestLabels:
    @pytest.mark.parametrize(
        ("value", "label"),
        [
            ("0", "0"),
            ("1", "1"),
            ("2", "2"),
            ("3", "3-4"),
            ("4", "3-4"),
            ("5", "5-8"),
            ("256", "129-256"),
            ("257", "257+"),
            (str(10**30), "other"),
            ("-1", "other"),
            ("", "other"),
            ("٣", "other"),
            ("1.0", "other"),
            (" 1", "other"),
        ],
    )
    def test_count_range(self, value, label):
        """Counts map to power-of-two ranges; anything not a plain decimal is ``other``."""
        assert count_range(value) == label

    def test_count_range_has_twelve_values(self):
        """The bound the README documents."""
        values = {count_range(str(n)) for n in range(10 * MAX_COUNT_LABEL)} | {count_range("x")}
        assert len(values) == 12

    def test_every_estimator_series_has_a_label(self):
        """The 38 estimator series are the ``series`` label's values."""
        assert len(ESTIMATOR_SERIES) == 38

    def test_default_buckets_increase(self):
        """Every histogram has increasing default bounds."""
        histograms = {f.name for f in FAMILIES if f.kind == "histogram"}
        assert set(DEFAULT_BUCKETS) == histograms
        for bounds in DEFAULT_BUCKETS.values():
            assert list(bounds) == sorted(set(bounds))


def test_readme_lists_every_family():
    """The README's family table is :func:`families_table`."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert families_table() in readme
