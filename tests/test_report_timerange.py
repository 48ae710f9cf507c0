"""The report's time range: ``--since``, ``--start``/``--end`` and the bucket width."""

from __future__ import annotations

import pytest

from luna_monitoring.report.timerange import (
    RangeError,
    TimeRange,
    bucket_ms,
    parse_instant,
    parse_since,
    time_range,
)

NOW_NS = 1_800_000_000 * 10**9


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1.5h", 5400), ("2d", 172800), ("1w", 604800)],
)
def test_since_units(text, seconds):
    """A number and one of s, m, h, d, w."""
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["1x", "0h", "-1h", "h", "1", "1 hour", "3651d", "nan", "1e3h"])
def test_since_rejected(text):
    """Anything else is a RangeError whose message names the option and the form."""
    with pytest.raises(RangeError, match=r"^invalid --since .*: use a number and a unit"):
        parse_since(text)


def test_default_is_the_last_hour():
    """No option: the hour before now."""
    assert time_range(None, None, None, NOW_NS) == TimeRange(NOW_NS - 3600 * 10**9, NOW_NS)


def test_since_counts_back_from_end():
    """``--since`` with ``--end``: the span before that end."""
    window = time_range("30m", None, "2027-01-15T08:00:00Z", NOW_NS)
    assert window == TimeRange(1_800_000_000 * 10**9 - 1800 * 10**9, 1_800_000_000 * 10**9)
    assert window.describe() == "2027-01-15 07:30:00 to 08:00:00 UTC"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2027-01-15T08:00:00Z", 1_800_000_000 * 10**9),
        ("2027-01-15T08:00:00", 1_800_000_000 * 10**9),
        ("2027-01-15T10:00:00+02:00", 1_800_000_000 * 10**9),
        ("1800000000", 1_800_000_000 * 10**9),
        ("1800000000.5", 1_800_000_000_500_000_000),
    ],
)
def test_instants(text, ns):
    """ISO 8601 (UTC unless it has an offset) or unix seconds."""
    assert parse_instant("--start", text) == ns


def test_range_across_days_names_both_dates():
    """The description repeats the date when the range crosses midnight."""
    window = time_range(None, "2027-01-14T23:00:00Z", "2027-01-15T01:00:00Z", NOW_NS)
    assert window.describe() == "2027-01-14 23:00:00 to 2027-01-15 01:00:00 UTC"
    assert window.where() == f"time >= {window.start_ns} AND time < {window.end_ns}"


@pytest.mark.parametrize(
    ("span_s", "expected_ms"),
    [
        (1, 100),
        (6, 100),
        (7, 200),
        (60, 1000),
        (3600, 60_000),
        (86400, 1_800_000),
        (10**8, 7 * 86_400_000),
    ],
)
def test_bucket_width(span_s, expected_ms):
    """The narrowest width giving at most 60 buckets (the widest for longer spans)."""
    assert bucket_ms(span_s * 10**9) == expected_ms
