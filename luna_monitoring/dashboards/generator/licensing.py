"""Licensing: the liveness balance and the licence warnings and errors (``licensing``)."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from .grafana import (
    InfluxAnnotation,
    assemble,
    graph,
    new_dashboard,
    rows,
    service_variable,
    single_stat,
)
from .queries import Target, measurement, over_time, select

LICENSING = measurement("licensing")
TABLE_ROWS = 500
STATUS_COLORS = {"warning": "orange", "error": "red"}


def _annotation(status: str) -> InfluxAnnotation:
    messages = f"{status}s"
    query = select(
        LICENSING,
        f"{LICENSING.field(messages)}, {LICENSING.field('liveness_balance')}, "
        f"{LICENSING.tag('license_status')}",
        where=[LICENSING.equals("license_status", status)],
    )
    return InfluxAnnotation(
        f"Licence {messages}", query, messages, "license_status", STATUS_COLORS[status]
    )


def build() -> Dashboard:
    """The dashboard, variables ``datasource`` and ``service``; annotated with every report."""
    balance = LICENSING.field("liveness_balance")
    messages = (LICENSING.field(name) for name in ("warnings", "errors"))
    reports = [LICENSING.tag("license_status"), balance, *messages]
    board = (
        new_dashboard(
            "luna-licensing",
            "LUNA monitoring / Licensing",
            "Liveness balance and licence warnings and errors reported by a service "
            "monitored by luna-monitoring.",
        )
        .with_variable(service_variable("licensing"))
        .annotations([_annotation(status) for status in STATUS_COLORS])
    )
    return assemble(
        board,
        single_stat(
            "Last liveness balance",
            "The last liveness_balance reported in the time range.",
            "none",
            Target(select(LICENSING, f"last({balance})")),
        ),
        single_stat(
            "Licence reports by status",
            "Warnings and errors reported over the time range.",
            "short",
            Target(
                select(LICENSING, f"count({balance})", group_by=["license_status"]),
                "$tag_license_status",
            ),
            width=18,
        ),
        graph(
            "Liveness balance",
            "liveness_balance as reported with each licence warning or error.",
            "none",
            over_time(LICENSING, f"last({balance})", fill="null", alias="liveness balance"),
            span_nulls=True,
        ),
        graph(
            "Licence reports per interval",
            "Licence warnings and errors per interval, by license_status.",
            "short",
            over_time(LICENSING, f"count({balance})", by="license_status", fill="0"),
            bars=True,
        ),
        rows(
            "Licence warnings and errors",
            f"The last {TABLE_ROWS} licence reports, newest first; also shown as annotations.",
            Target(select(LICENSING, ", ".join(reports), newest_first=TABLE_ROWS)),
            show_time=True,
            width=24,
            height=10,
        ),
    )
