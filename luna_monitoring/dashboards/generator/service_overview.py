"""Service overview: traffic, latency and errors per route (``requests``, ``errors``)."""

from __future__ import annotations

from functools import partial

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .grafana import Target, graph, new_dashboard, query_variable, rows, single_stat
from .queries import SERVICE_FILTER, measurement, percentile, rate, select, tag_values

REQUESTS = measurement("requests")
ERRORS = measurement("errors")
PERCENTILES = (50, 95, 99)


_requests = partial(select, REQUESTS, where=[REQUESTS.matches("route", "route")])
_errors = partial(select, ERRORS, where=[ERRORS.matches("route", "route")])


def _failures() -> str:
    return f"count({ERRORS.field('request_id')})"


def build() -> Dashboard:
    """The dashboard, variables ``datasource``, ``service`` and ``route`` (several)."""
    latency = REQUESTS.field("execution_time")
    return (
        new_dashboard(
            "luna-service-overview",
            "LUNA monitoring / Service overview",
            "Requests, latency and errors per route of a service monitored by luna-monitoring.",
        )
        .with_variable(query_variable("service", "Service", tag_values("requests", "service")))
        .with_variable(
            query_variable(
                "route",
                "Route",
                tag_values("requests", "route", where=SERVICE_FILTER),
                multi=True,
            )
        )
        .with_row(Row("Summary of the time range"))
        .with_panel(
            single_stat(
                "Requests",
                "Requests answered (series requests).",
                "short",
                Target(_requests(f"count({latency})")),
            )
        )
        .with_panel(
            single_stat(
                "Failed requests",
                "Responses with status >= 400 (series errors).",
                "short",
                Target(_errors(_failures())),
            )
        )
        .with_panel(
            single_stat(
                "Latency p95",
                "95th percentile of execution_time over all selected routes.",
                "s",
                Target(_requests(percentile(REQUESTS, "execution_time", 95))),
            )
        )
        .with_panel(
            single_stat(
                "Latency p99",
                "99th percentile of execution_time over all selected routes.",
                "s",
                Target(_requests(percentile(REQUESTS, "execution_time", 99))),
            )
        )
        .with_row(Row("Traffic and latency"))
        .with_panel(
            graph(
                "Request rate per route",
                "Requests per second, by route (series requests).",
                "reqps",
                Target(
                    _requests(
                        rate(REQUESTS, "execution_time"),
                        by_time=True,
                        group_by=["route"],
                        fill="0",
                    ),
                    "$tag_route",
                ),
            )
        )
        .with_panel(
            graph(
                "Latency per route (p50, p95, p99)",
                "Percentiles of execution_time (seconds from request to response), by route.",
                "s",
                *(
                    Target(
                        _requests(
                            percentile(REQUESTS, "execution_time", nth),
                            by_time=True,
                            group_by=["route"],
                            fill="null",
                        ),
                        f"$tag_route p{nth}",
                    )
                    for nth in PERCENTILES
                ),
            )
        )
        .with_panel(
            graph(
                "Responses by status code",
                "Responses per second, by HTTP status code (series requests).",
                "reqps",
                Target(
                    _requests(
                        rate(REQUESTS, "execution_time"),
                        by_time=True,
                        group_by=["status_code"],
                        fill="0",
                    ),
                    "$tag_status_code",
                ),
                bars=True,
            )
        )
        .with_panel(
            graph(
                "Image loading time per route (p95)",
                "95th percentile of load_images_for_processing_time, for the routes that "
                "report it (POST /sdk, POST /iso in the example service).",
                "s",
                Target(
                    _requests(
                        percentile(REQUESTS, "load_images_for_processing_time", 95),
                        by_time=True,
                        group_by=["route"],
                        fill="null",
                    ),
                    "$tag_route",
                ),
            )
        )
        .with_row(Row("Errors"))
        .with_panel(
            graph(
                "Error rate by status code",
                "Failed responses per second, by HTTP status code (series errors).",
                "reqps",
                Target(
                    _errors(
                        rate(ERRORS, "request_id"),
                        by_time=True,
                        group_by=["status_code"],
                        fill="0",
                    ),
                    "$tag_status_code",
                ),
                bars=True,
            )
        )
        .with_panel(
            graph(
                "Error rate by error code",
                "Failed responses per second, by LUNA error_code (0: the handler gave none).",
                "reqps",
                Target(
                    _errors(
                        rate(ERRORS, "request_id"),
                        by_time=True,
                        group_by=["error_code"],
                        fill="0",
                    ),
                    "$tag_error_code",
                ),
                bars=True,
            )
        )
        .with_panel(
            rows(
                "Top failing routes",
                "Failed responses per route, status code and error code, most first.",
                Target(
                    _errors(
                        f'{_failures()} AS "failures"',
                        group_by=["route", "status_code", "error_code"],
                    )
                ),
                sort_by="failures",
            )
        )
        .with_panel(
            rows(
                "Slowest routes",
                "Latency per route over the time range, slowest p99 first.",
                Target(
                    _requests(
                        ", ".join(
                            [
                                f'{percentile(REQUESTS, "execution_time", 99)} AS "p99"',
                                f'{percentile(REQUESTS, "execution_time", 95)} AS "p95"',
                                f'mean({latency}) AS "mean"',
                                f'max({latency}) AS "max"',
                                f'count({latency}) AS "requests"',
                            ]
                        ),
                        group_by=["route"],
                    )
                ),
                sort_by="p99",
                units={"p99": "s", "p95": "s", "mean": "s", "max": "s"},
            )
        )
    )
