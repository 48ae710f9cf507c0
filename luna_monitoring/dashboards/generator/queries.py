"""InfluxQL text of the dashboards' queries, every series, field and tag checked against
:data:`~luna_monitoring.core.schema.SERIES` as it is written.

Queries use Grafana's InfluxQL macros and the dashboards' template variables:
``$timeFilter``, ``$__interval`` / ``$__interval_ms``, and ``$service``, ``$route`` and
``$estimator``. The variables take several values ("All" included) and are matched as
regular expressions, ``/^$service$/``: Grafana then escapes every value, so a name with
quotes, dots or slashes selects exactly itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ...core.schema import SERIES, get_series

SERVICE_TAG = "service"
SERVICE_FILTER = '"service" =~ /^$service$/'
BY_TIME = "time($__interval)"
PER_SECOND = " * 1000 / $__interval_ms"
"""Appended to a ``count(...)`` per ``$__interval``: the count per second."""


class Target(NamedTuple):
    """One query of a panel; ``alias`` names its series (``$tag_route``, ``$m``, ``$col``)."""

    query: str
    alias: str | None = None


def ident(name: str) -> str:
    """``name`` as a double-quoted InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Source:
    """What a query reads: its ``FROM`` text and the schema series it can name."""

    text: str
    series: tuple[str, ...]

    def field(self, name: str) -> str:
        """``"name"``; ``ValueError`` unless every series of the source has that field."""
        missing = [s for s in self.series if name not in SERIES[s].fields]
        if missing:
            raise ValueError(f"field {name!r} is not in series {', '.join(missing)}")
        return ident(name)

    def tag(self, name: str) -> str:
        """``"name"``; ``ValueError`` unless every series of the source has that tag."""
        missing = [s for s in self.series if name not in (SERVICE_TAG, *SERIES[s].tags)]
        if missing:
            raise ValueError(f"tag {name!r} is not in series {', '.join(missing)}")
        return ident(name)

    def matches(self, tag: str, variable: str) -> str:
        """``"tag" =~ /^$variable$/``: the tag is one of a multi-value variable's values."""
        return f"{self.tag(tag)} =~ /^${variable}$/"

    def equals(self, tag: str, value: str) -> str:
        """``"tag" = 'value'``."""
        return f"{self.tag(tag)} = '{value}'"


def measurement(name: str) -> Source:
    """One series, by name."""
    return Source(ident(get_series(name).name), (name,))


def measurements(names: Iterable[str]) -> Source:
    """Several series in one ``FROM`` list (each a series of its own in the result)."""
    names = tuple(names)
    return Source(", ".join(ident(get_series(name).name) for name in names), names)


def chosen(variable: str, names: Iterable[str]) -> Source:
    """The series a multi-value variable holding some of ``names`` selects: ``/^$var$/``."""
    return Source(f"/^${variable}$/", tuple(get_series(name).name for name in names))


def select(
    source: Source,
    columns: str,
    *,
    where: Iterable[str] = (),
    group_by: Iterable[str] = (),
    by_time: bool = False,
    fill: str | None = None,
    newest_first: int | None = None,
) -> str:
    """``SELECT columns FROM source WHERE $timeFilter AND "service" =~ /^$service$/ ...``.

    ``by_time`` groups by ``time($__interval)`` (before the tags of ``group_by``);
    ``newest_first=N`` orders by time descending and keeps ``N`` points.
    """
    conditions = " AND ".join(("$timeFilter", SERVICE_FILTER, *where))
    text = f"SELECT {columns} FROM {source.text} WHERE {conditions}"
    groups = [BY_TIME] if by_time else []
    groups += [source.tag(tag) for tag in group_by]
    if groups:
        text += " GROUP BY " + ", ".join(groups)
    if fill is not None:
        text += f" fill({fill})"
    if newest_first is not None:
        text += f" ORDER BY time DESC LIMIT {newest_first}"
    return text


def over_time(
    source: Source,
    column: str,
    *,
    fill: str,
    by: str | None = None,
    where: Iterable[str] = (),
    alias: str | None = None,
) -> Target:
    """``column`` per ``$__interval`` (and per value of the tag ``by``, the default legend).

    ``fill`` is ``"0"`` for counts (an interval without points had none) and ``"null"`` for
    measured values (nothing was measured: a gap, not a zero).
    """
    query = select(
        source, column, where=where, group_by=[by] if by else [], by_time=True, fill=fill
    )
    return Target(query, alias or (f"$tag_{by}" if by else "$m"))


def percentile(source: Source, field: str, nth: int) -> str:
    """``percentile("field", nth)``."""
    return f"percentile({source.field(field)}, {nth})"


def rate(source: Source, field: str) -> str:
    """Points per second in each ``$__interval``, counted on a field every point has."""
    return f"count({source.field(field)}){PER_SECOND}"


def tag_values(series: str, tag: str, *, where: str | None = None) -> str:
    """``SHOW TAG VALUES FROM "series" WITH KEY = "tag"`` (a template variable's query)."""
    source = measurement(series)
    text = f"SHOW TAG VALUES FROM {source.text} WITH KEY = {source.tag(tag)}"
    return f"{text} WHERE {where}" if where else text


def measurements_among(names: Iterable[str]) -> str:
    """``SHOW MEASUREMENTS`` limited to ``names``: those of them that hold data."""
    alternatives = "|".join(get_series(name).name for name in names)
    return f"SHOW MEASUREMENTS WITH MEASUREMENT =~ /^({alternatives})$/"
