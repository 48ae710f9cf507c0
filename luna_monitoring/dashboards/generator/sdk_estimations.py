"""SDK estimations: ``sdkloop_task``, every estimator series, ``image_load`` and
``usages_statistic``; the estimator series and their fields come from the schema."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.timeseries import Panel

from ...core.schema import ESTIMATOR_SERIES, SERIES, USAGE_ESTIMATORS
from .grafana import assemble, graph, new_dashboard, query_variable, rows, service_variable, totals
from .queries import (
    Target,
    chosen,
    ident,
    measurement,
    measurements,
    measurements_among,
    over_time,
    percentile,
    rate,
    select,
)

SDKLOOP = measurement("sdkloop_task")
IMAGE_LOAD = measurement("image_load")
USAGES = measurement("usages_statistic")
ESTIMATORS = chosen("estimator", ESTIMATOR_SERIES)
DETECTORS = measurements(s for s in ESTIMATOR_SERIES if "detection_count" in SERIES[s].fields)
DESCRIPTORS = measurements(s for s in ESTIMATOR_SERIES if "descriptor_version" in SERIES[s].tags)


def _usage_sums() -> str:
    return ", ".join(
        f"sum({USAGES.field(f'{name}_usages')}) AS {ident(name)}" for name in USAGE_ESTIMATORS
    )


def _sdk_loop() -> tuple:
    return (
        Row("Requests with SDK estimations (sdkloop_task)"),
        graph(
            "SDK loop time by image count (p50, p99)",
            "Duration of the decorated handler, by the number of images it loaded.",
            "s",
            *(
                over_time(
                    SDKLOOP,
                    percentile(SDKLOOP, "execution_time", nth),
                    by="image_count",
                    fill="null",
                    alias=f"$tag_image_count images p{nth}",
                )
                for nth in (50, 99)
            ),
        ),
        graph(
            "SDK loop throughput by image count",
            "Requests with SDK estimations per second, by the number of images loaded.",
            "reqps",
            over_time(
                SDKLOOP,
                rate(SDKLOOP, "execution_time"),
                by="image_count",
                fill="0",
                alias="$tag_image_count images",
            ),
            bars=True,
        ),
    )


def _estimator_time(nth: int) -> Panel:
    return graph(
        f"Estimator time p{nth}",
        f"{nth}th percentile of execution_time per estimator series ($estimator).",
        "s",
        over_time(ESTIMATORS, percentile(ESTIMATORS, "execution_time", nth), fill="null"),
    )


def _estimators() -> tuple:
    count = f"count({ESTIMATORS.field('execution_time')})"
    return (
        Row("Estimators"),
        _estimator_time(50),
        _estimator_time(99),
        graph(
            "Estimator throughput",
            "Estimations per second per estimator series (a batch counts once).",
            "ops",
            over_time(ESTIMATORS, rate(ESTIMATORS, "execution_time"), fill="0"),
            bars=True,
        ),
        graph(
            "Estimations by batch size",
            "Estimations per interval per estimator series and batch_size.",
            "short",
            over_time(
                ESTIMATORS, count, by="batch_size", fill="0", alias="$m batch $tag_batch_size"
            ),
            bars=True,
        ),
        graph(
            "Detections",
            "Objects detected per interval by the detector series (detection_count).",
            "short",
            over_time(DETECTORS, f"sum({DETECTORS.field('detection_count')})", fill="0"),
            bars=True,
        ),
        graph(
            "Descriptor extractions by version",
            "Descriptor extractions per interval, by series and descriptor_version.",
            "short",
            over_time(
                DESCRIPTORS,
                f"count({DESCRIPTORS.field('execution_time')})",
                by="descriptor_version",
                fill="0",
                alias="$m v$tag_descriptor_version",
            ),
            bars=True,
        ),
    )


def _by_format(title: str, description: str, unit: str, *columns: tuple[str, str]) -> Panel:
    """A graph of ``(legend, column)`` pairs of ``image_load`` per format."""
    targets = (
        over_time(IMAGE_LOAD, column, by="format", fill="null", alias=f"$tag_format {name}")
        for name, column in columns
    )
    return graph(title, description, unit, *targets, width=8)


def _image_load() -> tuple:
    size, height, width = (IMAGE_LOAD.field(name) for name in ("size", "height", "width"))
    images = f'count({IMAGE_LOAD.field("execution_time")}) AS "images", mean({size}) AS "mean size"'
    return (
        Row("Image load (image_load)"),
        _by_format(
            "Image load time by format (p50, p99)",
            "Time to decode one image, by format.",
            "s",
            ("p50", percentile(IMAGE_LOAD, "execution_time", 50)),
            ("p99", percentile(IMAGE_LOAD, "execution_time", 99)),
        ),
        _by_format(
            "Image size by format",
            "Encoded image size, by format.",
            "bytes",
            ("mean", f"mean({size})"),
            ("max", f"max({size})"),
        ),
        _by_format(
            "Image dimensions by format",
            "Mean height and width in pixels of the decoded images, by format.",
            "none",
            ("height", f"mean({height})"),
            ("width", f"mean({width})"),
        ),
        rows(
            "Images by format, EXIF and autorotation",
            "Images loaded over the time range, by format, exif and autorotated.",
            Target(select(IMAGE_LOAD, images, group_by=["format", "exif", "autorotated"])),
            sort_by="images",
            units={"mean size": "bytes"},
            width=24,
            height=6,
        ),
    )


def _usage() -> tuple:
    return (
        Row("Estimator usage (usages_statistic)"),
        graph(
            "Estimator usage over time",
            "Estimator calls per interval, summed over the requests (usages_statistic).",
            "short",
            over_time(USAGES, _usage_sums(), fill="0", alias="$col"),
            width=16,
            height=12,
            bars=True,
        ),
        totals(
            "Estimator usage totals",
            "Estimator calls over the time range (usages_statistic).",
            "short",
            Target(select(USAGES, _usage_sums()), "$col"),
        ),
    )


def build() -> Dashboard:
    """The dashboard, variables ``datasource``, ``service`` and ``estimator`` (several)."""
    board = (
        new_dashboard(
            "luna-sdk-estimations",
            "LUNA monitoring / SDK estimations",
            "SDK loop, estimators, image loading and estimator usage of a service monitored "
            "by luna-monitoring.",
        )
        .with_variable(service_variable("sdkloop_task"))
        .with_variable(
            query_variable(
                "estimator", "Estimator", measurements_among(ESTIMATOR_SERIES), multi=True
            )
        )
    )
    return assemble(board, *_sdk_loop(), *_estimators(), *_image_load(), *_usage())
