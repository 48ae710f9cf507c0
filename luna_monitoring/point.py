"""The point model and its InfluxDB line-protocol encoding.

Escaping rules are data: one translate table per context, applied by one-line helpers.
The encoder caches the escaped ``measurement,tags`` prefix of each distinct tag set, so a
steady stream of request points costs one dict lookup for its series key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from orjson import dumps as _dumps

from .schema import INT64_MAX, INT64_MIN


class Point(NamedTuple):
    """One event: series (measurement) name, start time in ns, tags and fields."""

    series: str
    time_ns: int
    tags: Mapping[str, str]
    fields: Mapping[str, Any]


# Line protocol cannot carry a line break inside a name or tag: it becomes a space.
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\t": "\\ "})
_KEY = str.maketrans(
    {",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\t": "\\ "}
)
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    return _escape_trailing(name.translate(_MEASUREMENT))


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _escape_trailing(text.translate(_KEY))


def escape_string(text: str) -> str:
    """Escape a string field value (without the surrounding quotes)."""
    return text.translate(_STRING)


def _escape_trailing(text: str) -> str:
    # A trailing backslash would escape the separator after it; a space follows it instead.
    return text + " " if text.endswith("\\") and not text.endswith("\\ ") else text


class LineEncoder:
    """Encodes points to line protocol; bad points are skipped and counted.

    ``points_without_fields`` counts points left with no field to write (all ``None``,
    NaN or infinite); ``points_invalid`` counts points with a value of an unsupported type.
    """

    __slots__ = ("_field_keys", "_prefixes", "points_invalid", "points_without_fields")

    _MAX_PREFIXES = 10_000

    def __init__(self) -> None:
        self._prefixes: dict[tuple, str] = {}
        self._field_keys: dict[str, str] = {}
        self.points_without_fields = 0
        self.points_invalid = 0

    def _prefix(self, series: str, tags: Mapping[str, str]) -> str:
        key = (series, *tags.items())
        prefix = self._prefixes.get(key)
        if prefix is None:
            parts = [escape_measurement(series)]
            for tag, value in sorted(tags.items()):
                if value != "" and tag != "":
                    parts.append(f"{escape_key(tag)}={escape_key(str(value))}")
            prefix = ",".join(parts)
            if len(self._prefixes) >= self._MAX_PREFIXES:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def encode_lines(self, points: Iterable[Point | tuple]) -> list[str]:
        """The lines of all points that can be written, in order; the rest are counted."""
        prefixes = self._prefixes
        keys = self._field_keys
        lines = []
        append = lines.append
        for series, time_ns, tags, fields in points:
            prefix = prefixes.get((series, *tags.items()))
            if prefix is None:
                prefix = self._prefix(series, tags)
            parts = []
            for name, value in fields.items():
                kind = type(value)
                if kind is float:
                    if value - value != 0.0:  # NaN or infinite
                        continue
                    text = _dumps(value).decode()
                elif kind is str:
                    if '"' in value or "\\" in value:
                        value = value.translate(_STRING)
                    text = f'"{value}"'
                elif kind is int:
                    if not INT64_MIN <= value <= INT64_MAX:
                        break
                    text = f"{value}i"
                elif kind is bool:
                    text = "true" if value else "false"
                elif value is None:
                    continue
                else:
                    break
                key = keys.get(name)
                if key is None:
                    key = keys[name] = escape_key(name)
                parts.append(f"{key}={text}")
            else:
                if parts:
                    append(f"{prefix} {','.join(parts)} {time_ns}")
                else:
                    self.points_without_fields += 1
                continue
            self.points_invalid += 1
        return lines


def join_lines(lines: list[str]) -> bytes:
    """A write request body from encoded lines."""
    return "\n".join(lines).encode()
