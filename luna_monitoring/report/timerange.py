"""The report's time range: ``--since 1h`` or ``--start``/``--end``, and its bucket width."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import NamedTuple

_SINCE = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SINCE_S = 3650 * 86400
# Bucket widths of GROUP BY time(...), in milliseconds; the report picks the narrowest that
# gives at most TARGET_BUCKETS buckets over the data's span.
_BUCKETS_MS = (
    *(100, 200, 500),
    *(1000 * s for s in (1, 2, 5, 10, 15, 30)),
    *(60_000 * m for m in (1, 2, 5, 10, 15, 30)),
    *(3_600_000 * h for h in (1, 2, 3, 6, 12)),
    *(86_400_000 * d for d in (1, 7)),
)
TARGET_BUCKETS = 60


class RangeError(ValueError):
    """An invalid ``--since``/``--start``/``--end``; the message is one line for the user."""


class TimeRange(NamedTuple):
    """``[start_ns, end_ns)`` in nanoseconds since the epoch."""

    start_ns: int
    end_ns: int

    def where(self) -> str:
        """The InfluxQL condition on ``time``."""
        return f"time >= {self.start_ns} AND time < {self.end_ns}"

    def describe(self) -> str:
        """``2026-12-05 07:41:00 to 08:41:00 UTC`` (the date again if it changes)."""
        start, end = _utc(self.start_ns), _utc(self.end_ns)
        tail = "%H:%M:%S" if start.date() == end.date() else "%Y-%m-%d %H:%M:%S"
        return f"{start:%Y-%m-%d %H:%M:%S} to {end.strftime(tail)} UTC"


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def parse_since(text: str) -> float:
    """Seconds in ``30m``, ``1h``, ``2d``, ``1w``, ``90s`` (a number and a unit).

    >>> parse_since("1.5h")
    5400.0
    """
    match = _SINCE.fullmatch(text.strip())
    seconds = float(match[1]) * _UNIT_S[match[2]] if match else 0.0
    if not 0 < seconds <= _MAX_SINCE_S:
        raise RangeError(
            f"invalid --since {text!r}: use a number and a unit s, m, h, d or w "
            "(e.g. 30m, 1h, 2d), at most 3650d"
        )
    return seconds


def parse_instant(option: str, text: str) -> int:
    """Nanoseconds of an ISO 8601 time (UTC unless it has an offset) or of unix seconds."""
    try:
        return round(float(text) * 1e9)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RangeError(
            f"invalid {option} {text!r}: use ISO 8601 (2026-01-31T08:00:00Z) or unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1e9)


def time_range(
    since: str | None, start: str | None, end: str | None, now_ns: int | None = None
) -> TimeRange:
    """The range the options give; the last hour without any. ``RangeError`` when invalid."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if since is not None and start is not None:
        raise RangeError("give either --since or --start/--end, not both")
    end_ns = now_ns if end is None else parse_instant("--end", end)
    if start is not None:
        start_ns = parse_instant("--start", start)
    else:
        start_ns = end_ns - round(parse_since("1h" if since is None else since) * 1e9)
    if end_ns <= start_ns:
        raise RangeError(f"--end ({end}) must be after the start of the range")
    return TimeRange(start_ns, end_ns)


def bucket_ms(span_ns: int) -> int:
    """Width of ``GROUP BY time(...)`` for a span: the narrowest giving at most 60 buckets."""
    span_ms = span_ns / 1e6
    return next((b for b in _BUCKETS_MS if span_ms / b <= TARGET_BUCKETS), _BUCKETS_MS[-1])
