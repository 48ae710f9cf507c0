r"""The point model and its InfluxDB line-protocol encoding, per target dialect.

Escaping rules are data: one translate table or pattern per context and dialect, applied by
one-line helpers. The encoder caches the escaped ``measurement,tags`` prefix of each distinct
tag set and the ``key=`` text of each field key, so a steady stream of request points costs
one dict lookup for its series and tags, one per field key and one ``orjson`` call per float.
Tags given as a ``MappingProxyType`` (the read-only tag sets the request hooks and the
collector share between points) are taken to be immutable: their prefix is also found by the
mapping's identity, which spares building the tag-set key.

The guarantee: whatever the values, every point is written as exactly one line, which the
target reads as that point and nothing else. Values are stored as given except for the
changes listed here and in the README's table ("Line protocol: what each target stores"),
measured against InfluxDB 1.6.7 and VictoriaMetrics 1.79 (the ``influxdb`` dialect is for
InfluxDB 1.x and 2.x, the ``victoriametrics`` dialect for VictoriaMetrics' write APIs).

Both dialects:

- A line feed is written as the two characters ``\n`` everywhere (names and string values):
  both servers end a line at every line feed, quoted or not. Carriage returns, tabs and
  other text are written as they are.
- In string field values ``"`` and ``\`` get a backslash; the servers store them as given.
- A measurement that starts with ``#`` (a comment line) gets a backslash before it
  (stored as ``\#...``); leading tabs and NUL characters of the measurement and of field
  keys are removed (the servers skip them).
- ``,`` and space get a backslash in names, and so does ``=`` in tag keys, tag values and
  field keys.

``influxdb`` (InfluxDB reads ``\\`` as two backslashes, and its line splitter pairs
backslashes): backslashes at the end of a name, and in the measurement right before ``,``,
space, ``=`` or ``"``, are removed; an odd run of backslashes right before a space in a tag
key or tag value, or before ``,``, space or ``=`` in a field key, loses one backslash. ``"``
in field keys gets a backslash (stored as ``"``). The tag key and field key ``time`` are left
out (InfluxDB 1.x rejects the point, or drops the field).

``victoriametrics`` (VictoriaMetrics reads ``\\`` as one backslash): every backslash in names
is doubled, so names are stored as given, except that ``"`` in a field key is stored as
``\"`` (a bare one loses the point). The tag key ``__name__`` is left out (VictoriaMetrics
ignores it). A line longer than :data:`VM_MAX_LINE_BYTES` would fail the whole request: its
string values, whose text VictoriaMetrics does not store anyway (it stores the number the
text reads as, else 0), are cut to :data:`VM_MAX_STRING_CHARS` characters, and if it is still
too long, the point is not written (``points_invalid``).

Values: ``str`` -> ``"..."``, ``int`` -> ``<n>i`` (int64 only), ``float`` -> the shortest text
that reads back exactly, ``bool`` -> ``true``/``false``; subclasses of these are written as
their base type; other integral numbers (``numbers.Integral``) as ints, ``Decimal``,
``Fraction`` and other ``numbers.Real`` as floats. Tags are sorted by key; an int, float or
bool tag value is written as ``str(value)``. A field that is ``None``, NaN or ±inf, and a tag
whose value is ``None`` or whose key or value is empty after the changes above, are left out
silently. A field or tag that cannot be written (another type, an int outside int64, a key
that is empty after the changes, reserved, or the same as an earlier one's, a
:class:`Dropped` value) is left out and counted in ``fields_dropped`` or ``tags_dropped``;
the rest of the point is written. A point left without fields is not written and is counted
in ``points_without_fields``; a point whose time is not an int InfluxDB accepts (int64 but
the two lowest values and the highest), whose measurement is empty after the changes, or
that is no ``(series, time_ns, tags, fields)`` of mappings, is counted in ``points_invalid``.
Text that is not Unicode (a lone surrogate) becomes ``?`` in :func:`join_lines`.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple

from orjson import dumps as _dumps

from .caches import with_room
from .schema import INT64_MAX, INT64_MIN
from .speedups import speedups as _speedups

MIN_TIME_NS, MAX_TIME_NS = INT64_MIN + 2, INT64_MAX - 1
"""The time range InfluxDB accepts."""
VM_MAX_STRING_CHARS = 4096
"""String values of a line too long for VictoriaMetrics (which stores no text) are cut to
this length."""
VM_MAX_LINE_BYTES = 256 * 1024
"""VictoriaMetrics' ``-influx.maxLineSize`` default: a longer line fails the whole request."""


class Point(NamedTuple):
    """One event: series (measurement) name, start time in ns, tags and fields."""

    series: str
    time_ns: int
    tags: Mapping[str, str]
    fields: Mapping[str, Any]


PointTuple = tuple[str, int, Mapping[str, str], Mapping[str, Any]]
"""A point as it is buffered: ``(series, time_ns, tags, fields)``. A :class:`Point` is one;
the request path makes plain tuples, four times cheaper to make than a ``Point``, and the
compiled request path ``TimedPoint``s (``core/_speedups.c``), which read as those tuples
(unpacked, indexed, compared) without being tuples: consumers unpack them."""

_new_point = tuple.__new__  # Point(...) without NamedTuple's Python-level __new__


def as_points(points: Iterable[PointTuple]) -> list[Point]:
    """The :class:`Point` of each point tuple, for code that reads them by name."""
    return [point if type(point) is Point else _new_point(Point, point) for point in points]


class CountFields(dict):
    """Fields of one series that are all ``int`` counts (not ``bool``), with the same keys in
    the same order in every point of the series: the collector's ``usages_statistic``. The
    encoder writes their text once per distinct set of values and reuses it."""

    __slots__ = ()


if _speedups is not None:
    _speedups.setup(CountFields, _dumps)


class Dropped:
    """A field or tag value left out on purpose, with the reason: the request hooks and
    ``record()`` put it where a value could not be taken, and the encoder counts it in
    ``fields_dropped`` or ``tags_dropped`` (plugins see it in the point).

    >>> Dropped("requests: field 'size' must be int, got str 'big'")
    Dropped("requests: field 'size' must be int, got str 'big'")
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Dropped({self.reason!r})"


# -- names -------------------------------------------------------------------------------

_SKIPPED_AT_START = "\t\0"
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_FIELD_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", '"': '\\"'})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n"})
_VM_NAME = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "})
_VM_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ "})
_VM_FIELD_KEY = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", '"': '\\"'})

_MEASUREMENT_LOOSE = re.compile(r'\\+(?=[, ="]|\Z)')
_TRAILING = re.compile(r"\\+\Z")
_ODD_BEFORE_SPACE = re.compile(r"(?<!\\)((?:\\\\)*)\\(?= )")
_ODD_BEFORE_KEY_END = re.compile(r"(?<!\\)((?:\\\\)*)\\(?=[, =])")


def _lf(text: str) -> str:
    return text.replace("\n", "\\n")


def _measurement(text: str) -> str:
    return "\\" + text if text.startswith("#") else text


def influx_measurement(name: str) -> str:
    """A measurement as written for InfluxDB (empty if nothing writable is left)."""
    text = _MEASUREMENT_LOOSE.sub("", _lf(name)).lstrip(_SKIPPED_AT_START)
    return _measurement(text.translate(_MEASUREMENT))


def influx_tag(text: str) -> str:
    """A tag key or tag value as written for InfluxDB (empty if nothing is left)."""
    return _ODD_BEFORE_SPACE.sub(r"\1", _TRAILING.sub("", _lf(text))).translate(_KEY)


def influx_field_key(name: str) -> str:
    """A field key as written for InfluxDB (empty if nothing writable is left)."""
    text = _TRAILING.sub("", _lf(name)).lstrip(_SKIPPED_AT_START)
    return _ODD_BEFORE_KEY_END.sub(r"\1", text).translate(_FIELD_KEY)


def vm_measurement(name: str) -> str:
    """A measurement as written for VictoriaMetrics."""
    return _measurement(_lf(name.lstrip(_SKIPPED_AT_START).translate(_VM_MEASUREMENT)))


def vm_tag(text: str) -> str:
    """A tag key or tag value as written for VictoriaMetrics."""
    return _lf(text.translate(_VM_NAME))


def vm_field_key(name: str) -> str:
    """A field key as written for VictoriaMetrics."""
    return _lf(name.lstrip(_SKIPPED_AT_START).translate(_VM_FIELD_KEY))


def escape_string(text: str) -> str:
    """A string field value as written between its double quotes (both dialects)."""
    return text.translate(_STRING)


class Dialect(NamedTuple):
    """The line-protocol rules of one kind of target."""

    name: str
    measurement: Callable[[str], str]
    tag: Callable[[str], str]
    field_key: Callable[[str], str]
    plain_field_key: dict[int, str]
    """The field key table: a name it writes the same as :attr:`field_key` does is cached."""
    reserved_tag_keys: frozenset[str]
    reserved_field_keys: frozenset[str]
    max_string_chars: int
    max_line_bytes: int


_UNBOUNDED = 2**62
_MAX_COUNT_TEXTS = 1000  # texts of CountFields kept: a usages text is ~700 bytes
INFLUXDB = Dialect(
    "influxdb",
    influx_measurement,
    influx_tag,
    influx_field_key,
    _FIELD_KEY,
    frozenset({"time"}),
    frozenset({"time"}),
    _UNBOUNDED,
    _UNBOUNDED,
)
VICTORIAMETRICS = Dialect(
    "victoriametrics",
    vm_measurement,
    vm_tag,
    vm_field_key,
    _VM_FIELD_KEY,
    frozenset({"__name__"}),
    frozenset(),
    VM_MAX_STRING_CHARS,
    VM_MAX_LINE_BYTES,
)
DIALECTS: Mapping[str, Dialect] = MappingProxyType({d.name: d for d in (INFLUXDB, VICTORIAMETRICS)})
"""The dialects by name: ``"influxdb"`` (InfluxDB 1.x and 2.x), ``"victoriametrics"``."""


# -- values ------------------------------------------------------------------------------


def _field_value(value: Any, max_chars: int) -> str | None:
    """A field value as written; ``None`` to leave the field out silently.

    Raises ``TypeError`` for an unsupported type, ``ValueError``/``ArithmeticError`` for a
    number that cannot be written.
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
        return f'"{escape_string(value[:max_chars])}"'
    if value is None:
        return None
    if isinstance(value, Dropped):
        raise ValueError(value.reason)
    if isinstance(value, numbers.Integral):
        return _field_value(int(value), max_chars)
    if isinstance(value, numbers.Real | Decimal):
        return _field_value(float(value), max_chars)
    raise TypeError(f"unsupported type {type(value).__name__}")


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


class _InvalidPoint(Exception):
    """A point that cannot be written."""


class LineEncoder:
    """Encodes points to line protocol in a target's dialect; what cannot be written is left
    out and counted.

    ``points_without_fields`` counts points left with no field to write (all ``None``,
    NaN or infinite, or dropped); ``points_invalid`` points that cannot be written at all;
    ``fields_dropped`` and ``tags_dropped`` fields and tags left out of written points, the
    last reason in ``last_dropped`` (see the module docstring).

    >>> LineEncoder().encode_lines([Point("requests", 1, {"route": "GET:/"}, {"n": 1})])
    ['requests,route=GET:/ n=1i 1']
    """

    __slots__ = (
        "_counts",
        "_dialect",
        "_field_keys",
        "_max_line_chars",
        "_max_string_chars",
        "_prefixes",
        "_shared",
        "fields_dropped",
        "last_dropped",
        "points_invalid",
        "points_without_fields",
        "tags_dropped",
    )

    def __init__(self, dialect: str = "influxdb") -> None:
        self._dialect = DIALECTS[dialect]
        self._max_string_chars = self._dialect.max_string_chars
        self._max_line_chars = self._dialect.max_line_bytes // 4  # longer ones are measured
        self._prefixes: dict[tuple, str] = {}
        # id(tags): (tags, {series: prefix}); the entry keeps the mapping alive, so its id
        # cannot be reused while it is cached
        self._shared: dict[int, tuple[MappingProxyType, dict[str, str]]] = {}
        self._field_keys: dict[str, str] = {}
        self._counts: dict[tuple, str] = {}  # (series, *values) of CountFields: their text
        self.points_without_fields = 0
        self.points_invalid = 0
        self.fields_dropped = 0
        self.tags_dropped = 0
        self.last_dropped = ""

    @property
    def dialect(self) -> str:
        """The name of the dialect written."""
        return self._dialect.name

    def encode_lines(self, points: Iterable[Point | tuple]) -> list[str]:
        """The lines of all points that can be written, in order; the rest are counted.

        Compiled (``core/_speedups.c``) when built: the same lines and counts."""
        if _speedups is None:
            return self._encode_lines_python(points)
        return _speedups.encode_lines(self, points)

    def _encode_lines_python(self, points: Iterable[Point | tuple]) -> list[str]:
        """:meth:`encode_lines` in Python; the compiled one hands it every point it does not
        take itself (a cache miss, a value to escape or convert, anything unusual)."""
        prefixes = self._prefixes
        shared = self._shared
        counts = self._counts
        keys = self._field_keys
        max_chars = self._max_line_chars
        bounded = max_chars < _UNBOUNDED // 4  # checked first: len() costs 35 ns a point
        lines: list[str] = []
        append = lines.append
        for point in points:
            # The common case inline: tag set and field keys cached, values of the exact
            # base types. Anything else (a cache miss too) goes to _encode_point.
            try:
                series, time_ns, tags, fields = point
                if type(tags) is not MappingProxyType:
                    line = prefixes[series, *tags, *tags.values()]
                else:  # shared by the points of one or more series (estimators: batch size)
                    entry = shared.get(id(tags))
                    if entry is None or entry[0] is not tags:
                        entry = with_room(shared)[id(tags)] = (tags, {})
                    line = entry[1].get(series)
                    if line is None:
                        line = entry[1][series] = prefixes[series, *tags, *tags.values()]
                if type(fields) is CountFields:
                    count_key = (series, *fields.values())
                    text = counts.get(count_key)
                    if (
                        text is not None
                        and type(time_ns) is int
                        and MIN_TIME_NS <= time_ns <= MAX_TIME_NS
                    ):
                        append(f"{line} {text} {time_ns}")
                        continue
                prefix = line
                sep = " "  # before the first field, "," before the others
                for name, value in fields.items():
                    kind = type(value)
                    if kind is float:
                        if value - value:  # NaN or ±inf
                            continue
                        line = f"{line}{sep}{keys[name]}{_dumps(value).decode()}"
                    elif kind is str:
                        if '"' in value or "\\" in value or "\n" in value:
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
                        and not (bounded and len(line) >= max_chars)
                    ):
                        append(f"{line} {time_ns}")
                        if type(fields) is CountFields:
                            self._count_text(count_key, fields, line[len(prefix) + 1 :])
                        continue
            except (KeyError, TypeError, ValueError, AttributeError):
                pass
            line = self._encode_point(point)
            if line is not None:
                append(line)
        return lines

    def _count_text(self, key: tuple, fields: CountFields, text: str) -> None:
        """Keep the written text of ``fields`` for the next points with the same values."""
        if all(type(value) is int for value in fields.values()):
            with_room(self._counts, _MAX_COUNT_TEXTS)[key] = text

    def _encode_point(self, point: Any) -> str | None:
        """Encode one point with every check, filling the caches; count what is left out."""
        try:
            series, time_ns, tags, fields = point
            if type(time_ns) is not int or not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
                raise _InvalidPoint
            prefix = self._prefix(series, tags)
            items = fields.items()
        except (_InvalidPoint, TypeError, ValueError, AttributeError):
            self.points_invalid += 1
            return None
        line = self._line(series, time_ns, prefix, items, _UNBOUNDED)
        if line is None:
            self.points_without_fields += 1
            return None
        dialect = self._dialect
        if len(line) >= self._max_line_chars and _utf8_length(line) >= dialect.max_line_bytes:
            line = self._line(series, time_ns, prefix, items, dialect.max_string_chars, False)
            if line is None or _utf8_length(line) >= dialect.max_line_bytes:
                self.points_invalid += 1
                return None
        return line

    def _line(
        self,
        series: str,
        time_ns: int,
        prefix: str,
        items: Iterable[tuple[Any, Any]],
        max_chars: int,
        count: bool = True,
    ) -> str | None:
        """The line of a point, string values cut to ``max_chars``; ``None`` without fields.
        Fields left out are counted if ``count``."""
        parts: dict[str, str] = {}
        for name, value in items:
            try:
                text = _field_value(value, max_chars)
                if text is None:
                    continue
                key = self._field_key(name)
                if key in parts:
                    raise ValueError(f"written as {key[:-1]!r} like an earlier field")
            except (TypeError, ValueError, ArithmeticError) as exc:
                if count:
                    self._drop("field", series, name, value, exc)
                continue
            parts[key] = text
        if not parts:
            return None
        return f"{prefix} {','.join(key + text for key, text in parts.items())} {time_ns}"

    def _drop(self, what: str, series: Any, name: Any, value: Any, exc: Exception) -> None:
        """Count a field or tag left out of a point, and keep why."""
        if what == "field":
            self.fields_dropped += 1
        else:
            self.tags_dropped += 1
        reason = exc.args[0] if exc.args else type(exc).__name__
        if not isinstance(value, Dropped):
            reason = f"{_short(series)}: {what} {_short(name)} = {_short(value)}: {reason}"
        self.last_dropped = reason

    def _prefix(self, series: Any, tags: Any) -> str:
        """The escaped ``measurement,tags`` of a point, cached when nothing was left out."""
        if not isinstance(series, str):
            raise _InvalidPoint
        dialect = self._dialect
        measurement = dialect.measurement(series)
        if not measurement:
            raise _InvalidPoint
        cacheable = True
        escaped: dict[str, str] = {}
        for key, value in tags.items():
            if value is None:
                continue
            try:
                if isinstance(value, Dropped):
                    raise ValueError(value.reason)
                if not isinstance(key, str):
                    raise TypeError(f"key of type {type(key).__name__}")
                if not isinstance(value, str):
                    if not isinstance(value, int | float):
                        raise TypeError(f"unsupported type {type(value).__name__}")
                    value = str(value)
                    cacheable = False
                tag_key, tag_value = dialect.tag(key), dialect.tag(value)
                if tag_key in dialect.reserved_tag_keys:
                    raise ValueError(f"{tag_key!r} is reserved by the {dialect.name} target")
                if tag_key in escaped:
                    raise ValueError(f"written as {tag_key!r} like an earlier tag")
            except (TypeError, ValueError) as exc:
                self._drop("tag", series, key, value, exc)
                cacheable = False
                continue
            if tag_key and tag_value:
                escaped[tag_key] = tag_value
        prefix = ",".join([measurement, *(f"{k}={v}" for k, v in sorted(escaped.items()))])
        if cacheable:
            with_room(self._prefixes)[(series, *tags, *tags.values())] = prefix
        return prefix

    def _field_key(self, name: Any) -> str:
        """``key=`` for a field name, cached when the name is written unchanged."""
        if not isinstance(name, str):
            raise TypeError(f"key of type {type(name).__name__}")
        dialect = self._dialect
        key = dialect.field_key(name)
        if not key:
            raise ValueError("empty key")
        if key in dialect.reserved_field_keys:
            raise ValueError(f"{key!r} is reserved by the {dialect.name} target")
        if key == name.translate(dialect.plain_field_key):  # no other name becomes this key
            with_room(self._field_keys)[name] = key + "="
        return key + "="


def join_lines(lines: Iterable[str]) -> bytes:
    """A write request body from encoded lines (lone surrogates become ``?``); a list of
    ASCII lines is copied once, by the compiled code when built."""
    if _speedups is not None:
        body = _speedups.join_ascii_lines(lines)
        if body is not None:
            return body
    return "\n".join(lines).encode("utf-8", "replace")
