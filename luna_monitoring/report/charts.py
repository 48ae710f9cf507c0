"""The report's charts: matplotlib figures drawn with the Agg canvas into PNG data URIs.

Only :mod:`matplotlib.figure` is used (no pyplot, no global backend switch); text is never
parsed as math, so a ``$`` in a route name stays a ``$``. Durations are drawn in
milliseconds, times in UTC.
"""

from __future__ import annotations

import io
from base64 import b64encode
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .queries import Distribution, Line

WIDTH_IN = 10.0
DPI = 96
MAX_LINES = 8
"""Most lines or stack layers in one chart; the rest are summed as ``other``."""
MAX_PANELS = 40
_STYLE = {
    "text.parse_math": False,
    "font.size": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "timezone": "UTC",
}
PALETTE = (
    *("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"),
    *("#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"),
)
_PLAIN = FuncFormatter(lambda value, _: f"{value:g}")
"""Tick labels of log axes as plain numbers (math text is off)."""
LEVEL_COLORS = {50: "#2ca02c", 95: "#ff7f0e", 99: "#d62728"}
LEVEL_COLORS_BY_NAME = {f"p{level}": color for level, color in LEVEL_COLORS.items()}
STATUS_COLORS = {"warning": "#ff7f0e", "error": "#d62728"}


def short(label: str, limit: int = 40) -> str:
    """``label`` cut to ``limit`` characters with an ellipsis."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _render(draw: Callable[[Figure], None], height_in: float) -> str:
    with rc_context(_STYLE):
        figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
        draw(figure)
        out = io.BytesIO()
        FigureCanvasAgg(figure).print_png(out)
    return "data:image/png;base64," + b64encode(out.getvalue()).decode()


def _times(line: Line) -> np.ndarray:
    return np.array([t for t, _ in line], dtype="datetime64[ms]")


def _values(line: Line, scale: float = 1.0) -> np.ndarray:
    return np.array([v * scale for _, v in line], dtype=float)


def _time_axis(ax: Axes, ticks: int = 8) -> None:
    locator = AutoDateLocator(maxticks=ticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _top(lines: Mapping[str, Line]) -> dict[str, Line]:
    """The ``MAX_LINES - 1`` largest lines and the sum of the rest as ``other``."""
    ranked = sorted(lines, key=lambda k: -sum(v for _, v in lines[k]))
    if len(ranked) <= MAX_LINES:
        return {k: lines[k] for k in ranked}
    kept = {k: lines[k] for k in ranked[: MAX_LINES - 1]}
    other: dict[float, float] = {}
    for key in ranked[MAX_LINES - 1 :]:
        for t, v in lines[key]:
            other[t] = other.get(t, 0) + v
    kept[f"other ({len(ranked) - MAX_LINES + 1})"] = sorted(other.items())
    return kept


def colors_for(keys: Sequence[str]) -> dict[str, str]:
    """One palette color per key, in order (the same key keeps its color in every chart)."""
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)}


def _panels(figure: Figure, count: int, columns: int) -> list[Axes]:
    rows = -(-count // columns)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[count:]:
        extra.set_visible(False)
    return list(axes[:count])


def level_panels(series: Mapping[str, Mapping[int, Line]], columns: int) -> str:
    """One small chart per key (route or estimator) with a line per percentile, in ms."""
    keys = list(series)[:MAX_PANELS]
    rows = -(-len(keys) // columns)
    times = [t for key in keys for line in series[key].values() for t, _ in line]
    start, end = (np.datetime64(int(f(times)), "ms") for f in (min, max))

    def draw(figure: Figure) -> None:
        for ax, key in zip(_panels(figure, len(keys), columns), keys, strict=False):
            for level, line in series[key].items():
                ax.plot(
                    _times(line),
                    _values(line, 1000),
                    color=LEVEL_COLORS[level],
                    marker=".",
                    markersize=3,
                    linewidth=1.2,
                    label=f"p{level}",
                )
            ax.set_title(short(key, 48), fontsize=8.5, loc="left")
            ax.set_xlim(start, end)
            ax.set_ylim(bottom=0)
            ax.set_ylabel("ms")
            _time_axis(ax, 8 if columns <= 2 else 4)
        figure.axes[0].legend(loc="upper right", ncols=3)

    return _render(draw, 0.4 + rows * (2.2 if columns <= 2 else 1.5))


def time_lines(
    lines: Mapping[str, Line], unit: str, colors: Mapping[str, str] | None = None
) -> str:
    """Lines over time, one per key (the largest few, the rest as ``other``)."""
    shown = _top(lines)

    def draw(figure: Figure) -> None:
        ax = figure.subplots()
        for i, (key, line) in enumerate(shown.items()):
            color = (colors or {}).get(key, PALETTE[i % len(PALETTE)])
            ax.plot(_times(line), _values(line), label=short(key), color=color, linewidth=1.4)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        _time_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, 3.0)


def stacked_bars(panels: Mapping[str, Mapping[str, Line]], bucket_ms: int, unit: str) -> str:
    """One panel per title: bars over time stacked by key."""

    def draw(figure: Figure) -> None:
        for ax, (title, lines) in zip(_panels(figure, len(panels), 1), panels.items(), strict=True):
            bottom: dict[float, float] = {}
            for i, (key, line) in enumerate(_top(lines).items()):
                base = [bottom.get(t, 0.0) for t, _ in line]
                ax.bar(
                    _times(line),
                    _values(line),
                    width=np.timedelta64(int(bucket_ms * 0.9), "ms"),
                    bottom=base,
                    align="edge",
                    label=short(key),
                    color=PALETTE[i % len(PALETTE)],
                )
                for (t, v), b in zip(line, base, strict=True):
                    bottom[t] = b + v
            ax.set_title(title, fontsize=9, loc="left")
            ax.set_ylabel(unit)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            _time_axis(ax)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, 0.4 + 2.4 * len(panels))


def distributions(found: Sequence[Distribution]) -> str:
    """A box per series (p25-p75, p50 line, whiskers p5-p95, dots p99 and max), log ms."""

    def draw(figure: Figure) -> None:
        ax = figure.subplots()
        stats = [
            {
                "label": f"{short(d.series, 30)} ({d.count})",
                "med": d.percentiles[50] * 1000,
                "q1": d.percentiles[25] * 1000,
                "q3": d.percentiles[75] * 1000,
                "whislo": d.percentiles[5] * 1000,
                "whishi": d.percentiles[95] * 1000,
                "fliers": [d.percentiles[99] * 1000, d.max * 1000],
            }
            for d in reversed(found)
        ]
        ax.bxp(
            stats,
            orientation="horizontal",
            showfliers=True,
            patch_artist=True,
            boxprops={"facecolor": "#c6dbef", "edgecolor": "#1f77b4"},
            medianprops={"color": "#d62728", "linewidth": 1.5},
            flierprops={"marker": "o", "markersize": 3, "markerfacecolor": "#555"},
        )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_PLAIN)
        ax.set_xlabel("execution_time, ms (log scale)")

    return _render(draw, 0.8 + 0.24 * len(found))


def horizontal_bars(values: Mapping[str, int], unit: str) -> str:
    """One bar per key, largest on top, the value written at its end."""
    ranked = sorted(values.items(), key=lambda kv: kv[1])

    def draw(figure: Figure) -> None:
        ax = figure.subplots()
        labels = [short(k, 36) for k, _ in ranked]
        bars = ax.barh(labels, [v for _, v in ranked], color="#1f77b4")
        ax.bar_label(bars, padding=3, fontsize=7.5)
        ax.set_xlabel(unit)
        ax.grid(axis="y", visible=False)

    return _render(draw, 0.8 + 0.24 * len(ranked))


def stacked_horizontal(values: Mapping[str, Mapping[str, int]], unit: str, legend: str) -> str:
    """One bar per key, split into segments by sub-key (e.g. calls per batch size)."""
    keys = sorted(values, key=lambda k: sum(values[k].values()))
    parts = sorted({p for v in values.values() for p in v}, key=lambda p: (len(p), p))

    def draw(figure: Figure) -> None:
        ax = figure.subplots()
        left = np.zeros(len(keys))
        for i, part in enumerate(parts):
            widths = np.array([values[k].get(part, 0) for k in keys], dtype=float)
            ax.barh(
                [short(k, 36) for k in keys],
                widths,
                left=left,
                label=f"{legend} {part}",
                color=PALETTE[i % len(PALETTE)],
            )
            left += widths
        ax.set_xlabel(unit)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower right")

    return _render(draw, 0.8 + 0.24 * len(keys))


def grouped_bars(
    groups: Sequence[str],
    bars: Mapping[str, Sequence[float | None]],
    notes: Sequence[str],
    unit: str,
    *,
    colors: Mapping[str, str] | None = None,
    upper: Mapping[str, Sequence[float | None]] | None = None,
    log: bool = False,
) -> str:
    """Bars side by side in each group, a note above each group (e.g. its count); with
    ``upper``, a whisker from each bar up to that value (e.g. bar p50, whisker p95)."""

    def draw(figure: Figure) -> None:
        ax = figure.subplots()
        width = 0.8 / max(len(bars), 1)
        x = np.arange(len(groups))
        for i, (label, heights) in enumerate(bars.items()):
            h = _floats(heights)
            whisker = None
            if upper is not None:
                whisker = np.vstack([np.zeros_like(h), _floats(upper[label]) - h])
            ax.bar(
                x + (i - (len(bars) - 1) / 2) * width,
                h,
                width,
                yerr=whisker,
                capsize=3,
                label=label,
                color=(colors or {}).get(label, PALETTE[i % len(PALETTE)]),
            )
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(_PLAIN)
        for xi, note in zip(x, notes, strict=True):
            ax.annotate(
                note,
                (xi, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=7.5,
            )
        ax.set_xticks(x, [short(g, 24) for g in groups])
        ax.set_ylabel(unit)
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, 3.0)


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def balance(lines: Mapping[str, Line]) -> str:
    """Liveness balance over time, each report marked by its status (warning, error)."""

    def draw(figure: Figure) -> None:
        ax = figure.subplots()
        lowest: dict[float, float] = {}
        for t, v in (p for line in lines.values() for p in line):
            lowest[t] = min(v, lowest.get(t, v))
        merged = sorted(lowest.items())
        ax.step(_times(merged), _values(merged), where="post", color="#7f7f7f", linewidth=1)
        for status, line in sorted(lines.items()):
            ax.scatter(
                _times(line),
                _values(line),
                label=status,
                color=STATUS_COLORS.get(status, "#1f77b4"),
                marker="x" if status == "error" else "^",
                s=28,
                zorder=3,
            )
        ax.axhline(0, color="#d62728", linewidth=0.8, linestyle="--")
        ax.set_ylabel("liveness_balance (lowest in bucket)")
        _time_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(draw, 2.6)
