"""Service overview: traffic, latency and errors per route (``requests``, ``errors``)."""

from __future__ import annotations

from functools import partial

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .grafana import (
    assemble,
    graph,
    new_dashboard,
    query_variable,
    rows,
    service_variable,
    single_stat,
)
from .queries import (
    SERVICE_FILTER,
    Target,
    measurement,
    over_time,
    percentile,
    rate,
    select,
    tag_values,
)

REQUESTS = measurement("requests")
ERRORS = measurement("errors")
IN_ROUTES = {source: [source.matches("route", "route")] for source in (REQUESTS, ERRORS)}
"""Both series are filtered on the ``$route`` variable."""
PERCENTILES = (50, 95, 99)

_requests = partial(select, REQUESTS, where=IN_ROUTES[REQUESTS])
_errors = partial(select, ERRORS, where=IN_ROUTES[ERRORS])
_requests_over_time = partial(over_time, REQUESTS, where=IN_ROUTES[REQUESTS])
_errors_over_time = partial(over_time, ERRORS, where=IN_ROUTES[ERRORS])


def _summary() -> tuple:
    latency = REQUESTS.field("execution_time")
    return (
        Row("Summary of the time range"),
        single_stat(
            "Requests",
            "Requests answered (series requests).",
            "short",
            Target(_requests(f"count({latency})")),
        ),
        single_stat(
            "Failed requests",
            "Responses with status >= 400 (series errors).",
            "short",
            Target(_errors(f"count({ERRORS.field('request_id')})")),
        ),
        *(
            single_stat(
                f"Latency p{nth}",
                f"{nth}th percentile of execution_time over all selected routes.",
                "s",
                Target(_requests(percentile(REQUESTS, "execution_time", nth))),
            )
            for nth in PERCENTILES[1:]
        ),
    )


def _traffic() -> tuple:
    return (
        Row("Traffic and latency"),
        graph(
            "Request rate per route",
            "Requests per second, by route (series requests).",
            "reqps",
            _requests_over_time(rate(REQUESTS, "execution_time"), by="route", fill="0"),
        ),
        graph(
            "Latency per route (p50, p95, p99)",
            "Percentiles of execution_time (seconds from request to response), by route.",
            "s",
            *(
                _requests_over_time(
                    percentile(REQUESTS, "execution_time", nth),
                    by="route",
                    fill="null",
                    alias=f"$tag_route p{nth}",
                )
                for nth in PERCENTILES
            ),
        ),
        graph(
            "Responses by status code",
            "Responses per second, by HTTP status code (series requests).",
            "reqps",
            _requests_over_time(rate(REQUESTS, "execution_time"), by="status_code", fill="0"),
            bars=True,
        ),
        graph(
            "Image loading time per route (p95)",
            "95th percentile of load_images_for_processing_time, for the routes that "
            "report it (POST /sdk, POST /iso in the example service).",
            "s",
            _requests_over_time(
                percentile(REQUESTS, "load_images_for_processing_time", 95),
                by="route",
                fill="null",
            ),
        ),
    )


def _errors_section() -> tuple:
    latency = REQUESTS.field("execution_time")
    slowest = [
        f'{percentile(REQUESTS, "execution_time", 99)} AS "p99"',
        f'{percentile(REQUESTS, "execution_time", 95)} AS "p95"',
        f'mean({latency}) AS "mean"',
        f'max({latency}) AS "max"',
        f'count({latency}) AS "requests"',
    ]
    return (
        Row("Errors"),
        *(
            graph(
                f"Error rate by {what}",
                f"Failed responses per second, by {detail} (series errors).",
                "reqps",
                _errors_over_time(rate(ERRORS, "request_id"), by=tag, fill="0"),
                bars=True,
            )
            for tag, what, detail in (
                ("status_code", "status code", "HTTP status code"),
                ("error_code", "error code", "LUNA error_code, 0 when the handler gave none"),
            )
        ),
        rows(
            "Top failing routes",
            "Failed responses per route, status code and error code, most first.",
            Target(
                _errors(
                    f'count({ERRORS.field("request_id")}) AS "failures"',
                    group_by=["route", "status_code", "error_code"],
                )
            ),
            sort_by="failures",
        ),
        rows(
            "Slowest routes",
            "Latency per route over the time range, slowest p99 first.",
            Target(_requests(", ".join(slowest), group_by=["route"])),
            sort_by="p99",
            units={"p99": "s", "p95": "s", "mean": "s", "max": "s"},
        ),
    )


def build() -> Dashboard:
    """The dashboard, variables ``datasource``, ``service`` and ``route`` (several)."""
    board = (
        new_dashboard(
            "luna-service-overview",
            "LUNA monitoring / Service overview",
            "Requests, latency and errors per route of a service monitored by luna-monitoring.",
        )
        .with_variable(service_variable("requests"))
        .with_variable(
            query_variable(
                "route",
                "Route",
                tag_values("requests", "route", where=SERVICE_FILTER),
                multi=True,
            )
        )
    )
    return assemble(board, *_summary(), *_traffic(), *_errors_section())
