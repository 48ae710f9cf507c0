"""Points as ClickHouse ``JSONEachRow`` rows, one buffered line per point.

A line is ``<table>\\t<JSON object>``: the JSON has no raw tab or line break (orjson escapes
them in strings), so lines are joined and split like line protocol and the storage groups
them by table. Values go as they are; JSON needs no escaping rules of ours, so every string
(quotes, backslashes, line breaks, NUL, any Unicode) reads back exactly as it was.

What is written (the rest as for line protocol, see :mod:`luna_monitoring.core.point`):

- Tags of the series go to their column, other tags to ``extra_tags`` (request series only:
  in the others an unknown tag or field makes the point invalid); int, float and bool
  tag values become ``str(value)``; ``None`` and empty tags are left out (a tag column then
  holds ``''``).
- Fields of the series go to their column with its type (an int to a float column as a
  float); a value of another type makes the point invalid. Other fields go to
  ``extra_<type>s`` by their value's type (bools to ``extra_bools`` as 1/0). ``None``, NaN
  and ±inf are left out (a field column then holds ``NULL``).
- A point of a series without a table (not in the schema), with a time that is not an int64,
  an int field beyond int64, a tag value or field value of another type, or a key that is not
  a str, is invalid and counted in ``points_invalid``; a point left without fields is counted
  in ``points_without_fields``. Both are not written, as for InfluxDB.
- Text that is not Unicode (a lone surrogate) becomes ``?``.
- A :class:`~luna_monitoring.core.point.Dropped` value (one the request hooks or ``record()``
  could not take) is left out and counted in ``fields_dropped`` or ``tags_dropped``, the
  reason in ``last_dropped``, as for InfluxDB.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from orjson import JSONEncodeError
from orjson import dumps as _dumps

from ..core.point import Dropped
from ..core.schema import INT64_MAX, INT64_MIN, tag_value
from .clickhouse_tables import EXTRA_TAGS, EXTRAS, Table, tables


class _InvalidPoint(Exception):
    """A point that cannot be written."""


_NO_EXTRAS: dict = {}
"""The extras of a table without ``extra_*`` columns: adding one makes the point invalid."""


def _text(value: Any) -> str:
    """A str (or subclass) as a plain str, lone surrogates as ``?``."""
    return str.encode(value, "utf-8", "replace").decode()


class RowEncoder:
    """Encodes points to ``<table>\\t<JSONEachRow row>`` lines; counts what it skips.

    >>> RowEncoder().encode_lines([Point("requests", 1, {"route": "GET:/"}, {"n": 1})])
    ['requests\\t{"time":1,"route":"GET:/","extra_ints.key":["n"],"extra_ints.value":[1]}']
    """

    __slots__ = (
        "_tables",
        "fields_dropped",
        "last_dropped",
        "points_invalid",
        "points_without_fields",
        "tags_dropped",
    )

    def __init__(self, table_prefix: str = "") -> None:
        self._tables: dict[str, Table] = tables(table_prefix)
        self.points_invalid = 0
        self.points_without_fields = 0
        self.fields_dropped = 0
        self.tags_dropped = 0
        self.last_dropped = ""

    def encode_lines(self, points: Iterable[Any]) -> list[str]:
        """The lines of all points that can be written, in order; the rest are counted."""
        lines = []
        append = lines.append
        encode = self._encode
        for point in points:
            try:
                line = encode(point)
            except (_InvalidPoint, TypeError, ValueError, AttributeError):
                self.points_invalid += 1
                continue
            if line is None:
                self.points_without_fields += 1
            else:
                append(line)
        return lines

    def _encode(self, point: Any) -> str | None:
        series, time_ns, tags, fields = point
        table = self._tables.get(series) if type(series) is str else None
        if table is None or type(time_ns) is not int or not INT64_MIN <= time_ns <= INT64_MAX:
            raise _InvalidPoint
        row: dict[str, Any] = {"time": time_ns}
        extras: dict[str, tuple[list, list]] = {} if table.extras else _NO_EXTRAS
        for key, value in tags.items():
            if value is None:
                continue
            if type(value) is Dropped:
                self.tags_dropped += 1
                self.last_dropped = value.reason
                continue
            if not isinstance(value, str):
                value = tag_value(series, key, value)  # ValueError unless int, float or bool
            if not isinstance(key, str):
                raise _InvalidPoint
            if key and value:
                if key in table.tags:
                    row[key] = value
                else:
                    _extra(extras, EXTRA_TAGS, key, value)
        columns = table.fields
        written = 0
        for key, value in fields.items():
            if value is None:
                continue
            if type(value) is Dropped:
                self.fields_dropped += 1
                self.last_dropped = value.reason
                continue
            kind = columns.get(key)
            if kind is type(value) and (kind is str or (kind is float and not value - value)):
                row[key] = value  # the common case: a str or finite float of its own column
                written += 1
                continue
            if kind is None:
                if not isinstance(key, str):
                    raise _InvalidPoint
                value, column = _extra_field(value)
                if column is not None:
                    _extra(extras, column, key, value)
                    written += 1
                continue
            value = _column_value(value, kind)
            if value is not None:
                row[key] = value
                written += 1
        if not written:
            return None
        for column, (keys, values) in extras.items():
            row[f"{column}.key"] = keys
            row[f"{column}.value"] = values
        try:
            text = _dumps(row)
        except JSONEncodeError:  # a lone surrogate in a str
            text = _dumps(_replace_surrogates(row))
        return f"{table.name}\t{text.decode()}"


def _extra(extras: dict[str, tuple[list, list]], column: str, key: str, value: Any) -> None:
    if extras is _NO_EXTRAS:
        raise _InvalidPoint
    entry = extras.get(column)
    if entry is None:
        entry = extras[column] = ([], [])
    entry[0].append(key)
    entry[1].append(value)


def _column_value(value: Any, kind: type) -> Any:
    """``value`` for a column of ``kind``; ``None`` to leave it out; ``_InvalidPoint``."""
    if isinstance(value, bool):
        raise _InvalidPoint
    if kind is float and isinstance(value, int | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if kind is int and isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _InvalidPoint
        return int(value)
    if kind is str and isinstance(value, str):
        return value
    raise _InvalidPoint


def _extra_field(value: Any) -> tuple[Any, str | None]:
    """A handler-added field value and its Nested column (``None``: leave it out)."""
    if isinstance(value, bool):
        return int(value), EXTRAS[bool]
    for kind in (int, float, str):
        if isinstance(value, kind):
            value = _column_value(value, kind)
            return value, None if value is None else EXTRAS[kind]
    raise _InvalidPoint


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_text(k): _replace_surrogates(v) for k, v in value.items()}
    return value
