r"""The point model and its InfluxDB line-protocol encoding.

Escaping rules are data: one translate table per context, applied by one-line helpers.
The encoder caches the escaped ``measurement,tags`` prefix of each distinct tag set and the
``key=`` text of each field key, so a steady stream of request points costs one dict lookup
for its series and tags, one per field key and one ``orjson`` call per float. Tags given as a
``MappingProxyType`` (the read-only tag sets the request hooks and the collector share
between points) are taken to be immutable: their prefix is also found by the mapping's
identity, which spares building the tag-set key (0.3 µs of the 1.1 µs a request point
costs).

Escaping: ``,`` and space in names get a backslash, and so does ``=`` except in the
measurement; ``"`` and ``\`` get one inside string field values. ("Names" are the
measurement, tag keys, tag values and field keys.)

What InfluxDB's parser cannot read back as written is changed, the same way every time:

- Line breaks (``\n``, ``\r``) in names become spaces.
- Backslashes right before ``,``, ``=``, space or ``"``, or at the end of a name, are removed:
  InfluxDB would take the last of them for an escape (``a\,b`` -> ``a,b``, ``C:\dir\`` ->
  ``C:\dir``).
- Leading tabs and NUL characters of the measurement and of field keys are removed (InfluxDB
  skips them).
- A measurement that starts with ``#`` (which would make the line a comment) gets a backslash
  before it; InfluxDB stores ``\#...``.
- Text that is not Unicode (a lone surrogate) becomes ``?`` in :func:`join_lines`.

Everything else reads back from InfluxDB as it was written: other backslashes, tabs, quotes,
``#`` and any non-ASCII text in names, and every character of string field values.
(VictoriaMetrics reads two backslashes in a row in a name as one.)

Values: ``str`` -> ``"..."``, ``int`` -> ``<n>i`` (int64 only), ``float`` -> the shortest text
that reads back exactly, ``bool`` -> ``true``/``false``; subclasses of these are written as
their base type. Tags are sorted by key; an int, float or bool tag value is written as
``str(value)``. A field that is ``None``, NaN or ±inf, and a tag whose value is ``None`` or
whose key or value is empty after the changes above, are left out. A point left without
fields is not written and is counted in ``points_without_fields``. A point is invalid, not
written and counted in ``points_invalid`` when a field value has another type or an int is
outside int64, a tag value is not str, int, float or bool, the time is not an int InfluxDB
accepts (int64 but the two lowest values and the highest), the measurement or a field key is
empty after the changes, or two tag keys or two field keys become the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from orjson import dumps as _dumps

from .caches import with_room
from .schema import INT64_MAX, INT64_MIN

MIN_TIME_NS, MAX_TIME_NS = INT64_MIN + 2, INT64_MAX - 1
"""The time range InfluxDB accepts."""


class Point(NamedTuple):
    """One event: series (measurement) name, start time in ns, tags and fields."""

    series: str
    time_ns: int
    tags: Mapping[str, str]
    fields: Mapping[str, Any]


PointTuple = tuple[str, int, Mapping[str, str], Mapping[str, Any]]
"""A point as it is buffered: ``(series, time_ns, tags, fields)``. A :class:`Point` is one;
the request path makes plain tuples, four times cheaper to make than a ``Point``."""

_new_point = tuple.__new__  # Point(...) without NamedTuple's Python-level __new__


def as_points(points: Iterable[PointTuple]) -> list[Point]:
    """The :class:`Point` of each point tuple, for code that reads them by name."""
    return [point if type(point) is Point else _new_point(Point, point) for point in points]


_LINE_BREAKS = str.maketrans({"\n": " ", "\r": " "})
_LOOSE_BACKSLASHES = re.compile(r'\\+(?=[, ="]|\Z)')
_SKIPPED_AT_START = "\t\0"
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _name(text: str) -> str:
    """``text`` without line breaks and backslashes InfluxDB would take for escapes."""
    return _LOOSE_BACKSLASHES.sub("", text.translate(_LINE_BREAKS))


def escape_measurement(name: str) -> str:
    """A measurement name as written (empty if nothing writable is left)."""
    text = _name(name).lstrip(_SKIPPED_AT_START).translate(_MEASUREMENT)
    return "\\" + text if text.startswith("#") else text


def escape_tag(text: str) -> str:
    """A tag key or tag value as written (empty if nothing writable is left)."""
    return _name(text).translate(_KEY)


def escape_field_key(name: str) -> str:
    """A field key as written (empty if nothing writable is left)."""
    return _name(name).lstrip(_SKIPPED_AT_START).translate(_KEY)


def escape_string(text: str) -> str:
    """A string field value as written between its double quotes."""
    return text.translate(_STRING)


def _field_value(value: Any) -> str | None:
    """A field value as written; ``None`` to leave the field out.

    Raises ``TypeError`` for an unsupported type, ``ValueError`` for an int outside int64.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{value} is outside the int64 range")
        return f"{int(value)}i"
    if isinstance(value, float):
        return _dumps(float(value)).decode() if value - value == 0.0 else None
    if isinstance(value, str):
        return f'"{escape_string(value)}"'
    if value is None:
        return None
    raise TypeError(f"unsupported field value type {type(value).__name__}")


class _InvalidPoint(Exception):
    """A point that cannot be written."""


class LineEncoder:
    """Encodes points to line protocol; points that cannot be written are skipped and counted.

    ``points_without_fields`` counts points left with no field to write (all ``None``,
    NaN or infinite); ``points_invalid`` counts points that cannot be written at all (see the
    module docstring).

    >>> LineEncoder().encode_lines([Point("requests", 1, {"route": "GET:/"}, {"n": 1})])
    ['requests,route=GET:/ n=1i 1']
    """

    __slots__ = ("_field_keys", "_prefixes", "_shared", "points_invalid", "points_without_fields")

    def __init__(self) -> None:
        self._prefixes: dict[tuple, str] = {}
        self._shared: dict[int, tuple[MappingProxyType, str, str]] = {}  # id: tags, series, prefix
        self._field_keys: dict[str, str] = {}
        self.points_without_fields = 0
        self.points_invalid = 0

    def encode_lines(self, points: Iterable[Point | tuple]) -> list[str]:
        """The lines of all points that can be written, in order; the rest are counted."""
        prefixes = self._prefixes
        shared = self._shared
        keys = self._field_keys
        lines: list[str] = []
        append = lines.append
        for point in points:
            # The common case inline: tag set and field keys cached, values of the exact
            # base types. Anything else (a cache miss too) goes to _encode_point.
            try:
                series, time_ns, tags, fields = point
                if type(tags) is not MappingProxyType:
                    line = prefixes[series, *tags, *tags.values()]
                else:
                    entry = shared.get(id(tags))
                    if entry is not None and entry[0] is tags and entry[1] == series:
                        line = entry[2]
                    else:
                        line = prefixes[series, *tags, *tags.values()]
                        with_room(shared)[id(tags)] = (tags, series, line)
                sep = " "  # before the first field, "," before the others
                for name, value in fields.items():
                    kind = type(value)
                    if kind is float:
                        if value - value:  # NaN or ±inf
                            continue
                        line = f"{line}{sep}{keys[name]}{_dumps(value).decode()}"
                    elif kind is str:
                        if '"' in value or "\\" in value:
                            value = value.translate(_STRING)
                        line = f'{line}{sep}{keys[name]}"{value}"'
                    elif kind is int:
                        if not INT64_MIN <= value <= INT64_MAX:
                            break
                        line = f"{line}{sep}{keys[name]}{value}i"
                    elif kind is bool:
                        line = f"{line}{sep}{keys[name]}{'true' if value else 'false'}"
                    elif value is None:
                        continue
                    else:
                        break
                    sep = ","
                else:
                    if (
                        sep == ","
                        and type(time_ns) is int
                        and MIN_TIME_NS <= time_ns <= MAX_TIME_NS
                    ):
                        append(f"{line} {time_ns}")
                        continue
            except (KeyError, TypeError, ValueError, AttributeError):
                pass
            line = self._encode_point(point)
            if line is not None:
                append(line)
        return lines

    def _encode_point(self, point: Any) -> str | None:
        """Encode one point with every check, filling the caches; count what is skipped."""
        try:
            series, time_ns, tags, fields = point
            if type(time_ns) is not int or not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
                raise _InvalidPoint
            prefix = self._prefix(series, tags)
            parts = {}
            for name, value in fields.items():
                text = _field_value(value)
                if text is not None:
                    key = self._field_key(name)
                    if key in parts:
                        raise _InvalidPoint
                    parts[key] = text
        except (_InvalidPoint, TypeError, ValueError, AttributeError):
            self.points_invalid += 1
            return None
        if not parts:
            self.points_without_fields += 1
            return None
        return f"{prefix} {','.join(key + text for key, text in parts.items())} {time_ns}"

    def _prefix(self, series: Any, tags: Any) -> str:
        """The escaped ``measurement,tags`` of a point, cached when all its names are str."""
        if not isinstance(series, str):
            raise _InvalidPoint
        measurement = escape_measurement(series)
        if not measurement:
            raise _InvalidPoint
        cacheable = True
        escaped = {}
        for key, value in tags.items():
            if value is None:
                continue
            if not isinstance(value, str):
                if not isinstance(value, int | float):
                    raise _InvalidPoint
                value = str(value)
                cacheable = False
            if not isinstance(key, str):
                raise _InvalidPoint
            tag_key, tag_value = escape_tag(key), escape_tag(value)
            if tag_key and tag_value:
                if tag_key in escaped:
                    raise _InvalidPoint
                escaped[tag_key] = tag_value
        prefix = ",".join([measurement, *(f"{k}={v}" for k, v in sorted(escaped.items()))])
        if cacheable:
            with_room(self._prefixes)[(series, *tags, *tags.values())] = prefix
        return prefix

    def _field_key(self, name: Any) -> str:
        """``key=`` for a field name, cached when the name is written unchanged."""
        if not isinstance(name, str):
            raise _InvalidPoint
        key = escape_field_key(name)
        if not key:
            raise _InvalidPoint
        if key == name.translate(_KEY):  # nothing changed: no other name can become this key
            with_room(self._field_keys)[name] = key + "="
        return key + "="


def join_lines(lines: Iterable[str]) -> bytes:
    """A write request body from encoded lines (lone surrogates become ``?``)."""
    return "\n".join(lines).encode("utf-8", "replace")
