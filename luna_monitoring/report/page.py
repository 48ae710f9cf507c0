"""The report page: one self-contained HTML file (inline CSS, charts as PNG data URIs).

Every value from the database is escaped; sections without data say so in one line.
The page has no script and loads nothing from the network.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from . import charts
from .queries import LATENCY_PERCENTILES, ReportData, RouteStats

SECTIONS = (
    ("summary", "Summary"),
    ("routes", "Routes"),
    ("latency", "Latency per route"),
    ("rate", "Request rate per route"),
    ("errors", "Errors"),
    ("estimators", "Estimators"),
    ("image-load", "Image loading"),
    ("sdkloop", "SDK tasks by image count"),
    ("usage", "Estimator usage"),
    ("licensing", "Licensing"),
)
"""``(id, title)`` of every section, in page order."""
MAX_TABLE_ROWS = 50
ERROR_RATIO_BAD = 0.05
BUSIEST_ROUTES = 8
STALE_S = 300
"""A range ending this long after the last request gets a warning in the summary."""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:0;color:#1b1f24;background:#f6f7f9}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
nav{font-size:13px;margin:8px 0 0}nav a{margin-right:12px;color:#0b5cad}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 16px;
 margin:14px 0}
.meta{color:#57606a;font-size:13px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;
 margin-top:10px}
.tile{border:1px solid #dde1e6;border-radius:6px;padding:8px 10px;background:#fbfcfd}
.tile b{display:block;font-size:20px}.tile span{color:#57606a;font-size:12px}
.bad{border-color:#d62728;background:#fff3f2}.bad b{color:#b31d1d}
.warn{border-color:#ff9f1a;background:#fff8ec}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef1}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.hot td{background:#fff3f2}
img{display:block;max-width:100%;height:auto;margin:8px 0}
.empty{color:#57606a;font-style:italic;margin:0}
.note{color:#57606a;font-size:12px;margin:2px 0}
code{font-size:12px}
summary{cursor:pointer;color:#0b5cad;font-size:13px;margin:6px 0}
"""


def e(value: object) -> str:
    """Escaped text of a value."""
    return html.escape(str(value))


def duration(seconds: float | None) -> str:
    """``4.38 µs``, ``0.42 ms``, ``123 ms``, ``1.23 s`` (3 digits); ``-`` when there is none."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def percent(ratio: float) -> str:
    """``12.5 %``."""
    return f"{ratio * 100:.1f} %"


def _utc(ms: float) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M:%S} UTC"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{e(alt)}">'


def _empty(text: str) -> str:
    return f'<p class="empty">{e(text)}</p>'


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int]) -> str:
    """A table; columns in ``numeric`` are right-aligned. Rows beyond the limit are counted."""
    rows = list(rows)
    cls = [' class="n"' if i in numeric else "" for i in range(len(head))]
    out = ["<table><thead><tr>"]
    out += [f"<th{c}>{e(h)}</th>" for c, h in zip(cls, head, strict=True)]
    out.append("</tr></thead><tbody>")
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(f"<td{c}>{e(v)}</td>" for c, v in zip(cls, row, strict=True))
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    if len(rows) > MAX_TABLE_ROWS:
        out.append(f'<p class="note">… and {len(rows) - MAX_TABLE_ROWS} more rows</p>')
    return "".join(out)


def _tile(key: str, label: str, value: str, note: str = "", cls: str = "") -> str:
    return f'<div class="tile {cls}" id="total-{key}"><span>{e(label)}</span><b>{e(value)}</b>' + (
        f"<span>{e(note)}</span></div>" if note else "</div>"
    )


def _summary(data: ReportData, generated_ms: float) -> str:
    span_s = max((data.last_ms - data.first_ms) / 1000, 0.001)
    ratio = data.errors / data.requests
    worst = data.worst_route
    tiles = [
        _tile(
            "requests", "requests", f"{data.requests:,}", f"{data.requests / span_s:.1f} per second"
        ),
        _tile(
            "errors",
            "errors",
            f"{data.errors:,}",
            f"{percent(ratio)} of requests",
            "bad" if ratio > ERROR_RATIO_BAD else "",
        ),
        _tile("p50", "latency p50", duration(data.p50)),
        _tile("p99", "latency p99", duration(data.p99)),
    ]
    if worst is not None:
        tiles.append(
            _tile(
                "worst-route",
                "worst route (most errors, then slowest p99)",
                worst.route,
                f"{worst.errors} errors ({percent(worst.error_ratio)}), p99 {duration(worst.p99)}",
                "bad" if worst.errors else "",
            )
        )
    end_ms = data.window.end_ns / 1e6
    silent_s = (end_ms - data.last_ms) / 1000
    stale = ""
    if silent_s > STALE_S:
        stale = (
            f'<p class="tile warn">No request in the last {silent_s / 60:.0f} min of the range: '
            f"the last one came at {e(_utc(data.last_ms))}.</p>"
        )
    return (
        f'<p class="meta">Range {e(data.window.describe())}; requests from '
        f"{e(_utc(data.first_ms))} to {e(_utc(data.last_ms))}; charts in buckets of "
        f"{e(_bucket(data.bucket_ms))}; generated {e(_utc(generated_ms))}.</p>"
        f'<div class="tiles">{"".join(tiles)}</div>{stale}'
    )


def _bucket(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms // 1000} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min"
    return f"{ms // 3_600_000} h"


def _routes(routes: Sequence[RouteStats]) -> str:
    head = ["route", "requests", "errors", "error ratio", "p50", "p95", "p99"]
    rows = [
        (
            r.route,
            f"{r.requests:,}",
            f"{r.errors:,}",
            percent(r.error_ratio),
            duration(r.p50),
            duration(r.p95),
            duration(r.p99),
        )
        for r in routes
    ]
    note = '<p class="note">Worst first: most errors, then slowest p99.</p>'
    return note + _table(head, rows, {1, 2, 3, 4, 5, 6})


def _latency(data: ReportData) -> str:
    busiest = sorted(data.routes, key=lambda r: -r.requests)[:BUSIEST_ROUTES]
    some = len(busiest) < len(data.routes)
    shown = f"the {len(busiest)} busiest of {len(data.routes)} routes; " if some else ""
    panels = {r.route: data.latency[r.route] for r in busiest if r.route in data.latency}
    return (
        f'<p class="note">p50, p95 and p99 of execution_time per bucket ({shown}all in the '
        "routes table).</p>" + _img(charts.level_panels(panels, 2), "latency per route")
    )


def _errors(data: ReportData) -> str:
    if not data.errors:
        return _empty("No errors in this range.")
    chart = charts.stacked_bars(
        {
            "errors per bucket by status_code": data.errors_by_status,
            "errors per bucket by error_code": data.errors_by_code,
        },
        data.bucket_ms,
        "errors",
    )
    rows = [
        (status, code, route, f"{n:,}", percent(n / data.errors))
        for status, code, route, n in data.error_table
    ]
    table = _table(["status_code", "error_code", "route", "errors", "share"], rows, {3, 4})
    return _img(chart, "errors over time by status_code and error_code") + table


def _estimators(data: ReportData) -> str:
    if not data.estimators:
        return _empty("No estimator points in this range.")
    rows = [
        (
            d.series,
            f"{d.count:,}",
            duration(d.percentiles[50]),
            duration(d.percentiles[95]),
            duration(d.percentiles[99]),
            duration(d.max),
        )
        for d in data.estimators
    ]
    table = _table(["series", "calls", "p50", "p95", "p99", "max"], rows, {1, 2, 3, 4, 5})
    slowest = sorted(data.estimators, key=lambda d: -d.percentiles[99])
    lines = data.estimator_lines
    over_time = {d.series: lines[d.series] for d in slowest if d.series in lines}
    return (
        '<p class="note">Box p25-p75, red line p50, whiskers p5-p95, dots p99 and max; '
        "calls in brackets; slowest median on top.</p>"
        + _img(charts.distributions(data.estimators), "execution_time distribution per series")
        + f"<details><summary>calls and percentiles of {len(rows)} series</summary>{table}"
        + "</details>"
        + f"<h3>p50 and p99 over time of the {len(over_time)} slowest series (by p99)</h3>"
        + _img(charts.level_panels(over_time, 4), "estimator execution_time over time")
        + "<h3>calls per batch_size</h3>"
        + _img(
            charts.stacked_horizontal(data.batch_calls, "calls", "batch_size"),
            "estimator calls per batch size",
        )
    )


def _image_load(data: ReportData) -> str:
    if not data.image_load:
        return _empty("No image_load points in this range.")
    groups = list(dict.fromkeys(size for size, *_ in data.image_load))
    formats = sorted({fmt for _, fmt, *_ in data.image_load})
    found = {(size, fmt): (p50, p95) for size, fmt, _, p50, p95 in data.image_load}

    def level(fmt: str, i: int) -> list[float | None]:
        return [found[(g, fmt)][i] * 1000 if (g, fmt) in found else None for g in groups]

    counts = {g: sum(n for size, _, n, *_ in data.image_load if size == g) for g in groups}
    chart = charts.grouped_bars(
        groups,
        {fmt: level(fmt, 0) for fmt in formats},
        [f"{counts[g]:,} images" for g in groups],
        "execution_time, ms (log scale)",
        upper={fmt: level(fmt, 1) for fmt in formats},
        log=True,
    )
    rows = [
        (size, fmt, f"{n:,}", duration(p50), duration(p95))
        for size, fmt, n, p50, p95 in data.image_load
    ]
    return (
        '<p class="note">Decoding time by image size (field <code>size</code>) and format: '
        "bar p50, whisker p95.</p>"
        + _img(chart, "image_load time by format and size")
        + _table(["size", "format", "images", "p50", "p95"], rows, {2, 3, 4})
    )


def _sdkloop(data: ReportData) -> str:
    if not data.sdkloop:
        return _empty("No sdkloop_task points in this range.")
    groups = [f"image_count {count}" for count, _, _ in data.sdkloop]
    bars = {
        f"p{level}": [pcts[level] * 1000 for _, _, pcts in data.sdkloop]
        for level in LATENCY_PERCENTILES
    }
    notes = [f"{n:,} tasks" for _, n, _ in data.sdkloop]
    return _img(
        charts.grouped_bars(
            groups, bars, notes, "execution_time, ms", colors=charts.LEVEL_COLORS_BY_NAME
        ),
        "sdkloop_task time by image_count",
    )


def _usage(data: ReportData) -> str:
    used = {k: v for k, v in data.usage_totals.items() if v}
    if not used:
        return _empty("No usages_statistic points in this range.")
    unused = sorted(k for k, v in data.usage_totals.items() if not v)
    note = f'<p class="note">Not used: {e(", ".join(unused))}.</p>' if unused else ""
    return (
        "<h3>total per estimator</h3>"
        + _img(charts.horizontal_bars(used, "usages"), "usage totals per estimator")
        + note
        + "<h3>over time (per bucket)</h3>"
        + _img(charts.time_lines(data.usage_lines, "usages per bucket"), "usages over time")
    )


def _licensing(data: ReportData) -> str:
    if not data.licensing:
        return _empty("No licensing points (no licence warnings or errors) in this range.")
    rows = [
        (status, f"{n:,}", balance, message)
        for status, n, balance, message in sorted(data.license_summary)
    ]
    return (
        _img(charts.balance(data.licensing), "liveness balance over time")
        + '<p class="note">▲ warning, ✕ error; the line is the lowest balance reported per '
        "bucket.</p>"
        + _table(["license_status", "reports", "last balance", "last message"], rows, {1, 2})
    )


def render(data: ReportData, generated_ms: float) -> str:
    """The whole page."""
    colors = charts.colors_for([r.route for r in data.routes])
    bodies = {
        "summary": _summary(data, generated_ms),
        "routes": _routes(data.routes),
        "latency": _latency(data),
        "rate": _img(
            charts.time_lines(data.rate, "requests per second", colors), "request rate per route"
        ),
        "errors": _errors(data),
        "estimators": _estimators(data),
        "image-load": _image_load(data),
        "sdkloop": _sdkloop(data),
        "usage": _usage(data),
        "licensing": _licensing(data),
    }
    title = f"{data.service}: luna-monitoring report"
    nav = "".join(f'<a href="#{key}">{e(name)}</a>' for key, name in SECTIONS[1:])
    sections = []
    for key, name in SECTIONS:
        heading = f"<h1>{e(title)}</h1>" if key == "summary" else f"<h2>{e(name)}</h2>"
        extra = f"<nav>{nav}</nav>" if key == "summary" else ""
        sections.append(f'<section id="{key}">{heading}{bodies[key]}{extra}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )
