"""``python -m luna_monitoring report``: the service's health as one self-contained page.

>>> from luna_monitoring.report import write_report
>>> write_report(settings, time_range("1h", None, None), "luna-remote-sdk", Path("r.html"))

Needs the ``report`` extra (matplotlib). Queries are InfluxQL over ``/query``
(:mod:`.influxql`), aggregated in the database (:mod:`.queries`), drawn by :mod:`.charts`
into the page of :mod:`.page`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.settings import Settings
from .influxql import InfluxQL, QueryError
from .page import render
from .queries import NoData, Reader, ReportData
from .timerange import RangeError, TimeRange, time_range

__all__ = ["NoData", "QueryError", "RangeError", "TimeRange", "time_range", "write_report"]


def write_report(
    settings: Settings, window: TimeRange, service: str, out: Path, timeout_s: float = 60.0
) -> ReportData:
    """Query ``window`` for ``service`` and write the page to ``out``; return what it shows.

    Raises :class:`QueryError` (:class:`NoData` when the range has no requests).
    """
    data = Reader(InfluxQL(settings, timeout_s), window, service).read()
    out.write_text(render(data, time.time() * 1000), encoding="utf-8")
    return data
