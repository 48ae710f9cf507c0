"""Random points through real InfluxDB 1.x and VictoriaMetrics, read back.

Every batch is written as one body; what each server stores must be exactly what the
documented rules predict (``stored_*`` below, written from the README table, not from the
encoder): as many points as were written, no other series, every name and value as given but
for the documented changes, and the fields and tags left out counted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from servers import InfluxDatabase, InfluxDB1, VictoriaMetrics, http_request, unique_name

from luna_monitoring.core.point import MAX_TIME_NS, MIN_TIME_NS, LineEncoder, Point, join_lines
from luna_monitoring.core.schema import INT64_MAX, INT64_MIN

# -- the documented changes, per target -----------------------------------------------------

ODD_RUN = r"(?<!\\)((?:\\\\)*)\\(?=[{}])"


def _one_less_before(chars: str, text: str) -> str:
    """``text`` with one backslash less in every odd run right before one of ``chars``."""
    return re.sub(ODD_RUN.format(re.escape(chars)), r"\1", text)


def influx_measurement(text: str) -> str:
    text = re.sub(r'\\+(?=[, ="]|$)', "", text.replace("\n", "\\n")).lstrip("\t\0")
    return "\\" + text if text.startswith("#") else text


def influx_tag(text: str) -> str:
    return _one_less_before(" ", text.replace("\n", "\\n").rstrip("\\"))


def influx_field_key(text: str) -> str:
    return _one_less_before(", =", text.replace("\n", "\\n").rstrip("\\").lstrip("\t\0"))


def vm_measurement(text: str) -> str:
    text = text.lstrip("\t\0").replace("\n", "\\n")
    return "\\" + text if text.startswith("#") else text


def vm_tag(text: str) -> str:
    return text.replace("\n", "\\n")


def vm_field_key(text: str) -> str:
    return text.lstrip("\t\0").replace("\n", "\\n").replace('"', '\\"')


def stored_string(text: str) -> str:
    return text.replace("\n", "\\n")


RULES = {
    "influxdb": (influx_measurement, influx_tag, influx_field_key, {"time"}, {"time"}),
    "victoriametrics": (vm_measurement, vm_tag, vm_field_key, {"__name__"}, set()),
}


def is_written(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def expected_point(point: Point, dialect: str) -> tuple[str, dict, dict, int, int]:
    """``(measurement, tags, fields, tags left out, fields left out)`` as stored; no fields:
    the point is not written."""
    measurement, tag, field_key, reserved_tags, reserved_fields = RULES[dialect]
    tags: dict[str, str] = {}
    tags_left_out = 0
    for key, value in point.tags.items():
        key, value = tag(key), tag(value)
        if key in reserved_tags or key in tags:
            tags_left_out += 1
        elif key and value:
            tags[key] = value
    fields: dict[str, Any] = {}
    fields_left_out = 0
    for key, value in point.fields.items():
        if not is_written(value):
            continue
        key = field_key(key)
        if not key or key in reserved_fields or key in fields:
            fields_left_out += 1
        else:
            fields[key] = stored_string(value) if isinstance(value, str) else value
    return measurement(point.series), tags, fields, tags_left_out, fields_left_out


# -- random points --------------------------------------------------------------------------

# Characters the rules are about, drawn often, mixed with any other Unicode text.
SPECIAL = st.sampled_from(list('\\\\\\, ="\n\r\t#\0'))
NAME = st.lists(st.one_of(SPECIAL, st.characters(exclude_categories=("Cs",))), max_size=8).map(
    "".join
)  # st.text would draw the special characters far more rarely
KEY = st.one_of(NAME, st.sampled_from(["time", "time\\", "__name__", "\ttime"]))
FIELD_VALUE = st.one_of(
    st.sampled_from([None, math.nan, math.inf]),
    NAME,
    st.text(st.characters(exclude_categories=("Cs",))),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(min_value=-1e100, max_value=1e100).filter(lambda x: x == 0 or abs(x) > 1e-100),
    st.booleans(),
)


@st.composite
def random_points(draw: st.DrawFn, start_ns: int) -> list[Point]:
    """10-25 points, each in its own measurement (a unique suffix), 1 ms apart.

    Tag keys that would be stored as one of the point's field keys are renamed: InfluxQL
    would return such a tag under another name.
    """
    points = []
    for index in range(draw(st.integers(10, 25))):
        fields = draw(st.dictionaries(KEY, FIELD_VALUE, min_size=1, max_size=4))
        stored_keys = {rule(k) for k in fields for rule in (influx_field_key, vm_field_key)}
        tags = {
            key if not {influx_tag(key), vm_tag(key)} & stored_keys else f"tag{key}": value
            for key, value in draw(st.dictionaries(KEY, NAME, max_size=4)).items()
        }
        series = draw(NAME) + f"_{index}"
        points.append(Point(series, start_ns + index * 1_000_000, tags, fields))
    return points


BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character Python's ``str.splitlines`` splits at; only the line feed ends a line."""


def line_breaks(start_ns: int) -> list[Point]:
    """Each line break alone and in company, in every name and in string values."""
    points = []
    for index, char in enumerate(BREAKS):
        text = f"a{char}b{char}"
        tags = {text: text, f"{char}k": f"{char}v", "q": f'"{char}"'}
        fields = {text: text, "s": f"x{char}y=1 {char}", "n": index}
        points.append(Point(f"{text}_{index}", start_ns + index * 1_000_000, tags, fields))
    return points


_BATCH_STARTS = itertools.count(1_600_000_000_000_000_000, 3_600 * 10**9)
SERVER_SETTINGS = settings(
    deadline=None,
    max_examples=12,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: minutes per failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_counts(encoder: LineEncoder, points: list[Point], expected: list, lines: list) -> None:
    """Lines written and the encoder's counters match the expectation."""
    written = [e for e in expected if e[2]]
    assert len(lines) == len(written)
    assert encoder.points_invalid == 0
    assert encoder.points_without_fields == len(points) - len(written)
    dropped = (encoder.tags_dropped, encoder.fields_dropped)
    assert dropped == (sum(e[3] for e in expected), sum(e[4] for e in expected))


# -- InfluxDB 1.x ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(server: InfluxDB1) -> Iterator[InfluxDatabase]:
    """A new database on ``server``, dropped afterwards."""
    database = InfluxDatabase(server, unique_name("point"))
    server.create_database(database.name)
    try:
        yield database
    finally:
        server.drop_database(database.name)


def exactly(name: str) -> str:
    """An InfluxQL regular expression that matches ``name`` and nothing else."""
    return "/^" + "".join(c if c.isalnum() else f"\\x{{{ord(c):x}}}" for c in name) + "$/"


def read_influx(database: InfluxDatabase, measurements: list[str]) -> dict[str, tuple]:
    """``(time, tags, fields)`` of the one point stored in each of ``measurements``.

    One ``SELECT`` per measurement, all in one request: a single ``SELECT`` over several
    measurements would drop fields whose type differs between them.
    """
    if not measurements:
        return {}
    statements = [f"SELECT * FROM {exactly(m)} GROUP BY *" for m in measurements]
    results = database.server.execute(";".join(statements), database.name)
    stored = {}
    for measurement, result in zip(measurements, results, strict=True):
        (series,) = result["series"]
        (row,) = series["values"]
        fields = {
            k: v for k, v in zip(series["columns"][1:], row[1:], strict=True) if v is not None
        }
        stored[measurement] = (row[0], series.get("tags", {}), fields)
    return stored


def same_influx_value(got: Any, sent: Any) -> bool:
    """InfluxDB's JSON has floats with integral values as ints; everything else is exact."""
    if type(sent) is float:
        return type(got) in (int, float) and float(got) == sent
    return type(got) is type(sent) and got == sent


@SERVER_SETTINGS
@given(points=random_points(1_700_000_000_000_000_000))
@example(points=line_breaks(1_700_000_000_000_000_000))
def test_random_points_read_back_from_influxdb_as_documented(influxdb: InfluxDB1, points):
    encoder = LineEncoder("influxdb")
    lines = encoder.encode_lines(points)
    expected = [expected_point(p, "influxdb") for p in points]
    with fresh_database(influxdb) as database:
        response = database.write_lines(join_lines(lines))
        assert response.status == 204, response.body
        measurements = [row["name"] for row in database.query("SHOW MEASUREMENTS")]
        stored = read_influx(database, measurements)

    assert sorted(measurements) == sorted(e[0] for e in expected if e[2])
    for point, wanted in zip(points, expected, strict=True):
        measurement, tags, fields, _, _ = wanted
        if fields:
            time_ns, got_tags, got_fields = stored[measurement]
            assert (time_ns, got_tags, got_fields.keys()) == (point.time_ns, tags, fields.keys())
            for key, value in fields.items():
                assert same_influx_value(got_fields[key], value), (point, key)
    check_counts(encoder, points, expected, lines)


# -- VictoriaMetrics ------------------------------------------------------------------------

VM_NUMBER = re.compile(  # as measured against VictoriaMetrics 1.79: "1." is no number, "5.e1" is
    r"-?\d+(?:\.\d+|\.(?=[eE]))?(?:[eE][+-]?\d+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE
)


def vm_value(value: Any) -> float:
    """What VictoriaMetrics stores for a field value: numbers only (a string: the number it
    reads as, ``Infinity`` too, else 0; one that reads as NaN is not stored)."""
    if isinstance(value, str):
        return float(value) if VM_NUMBER.fullmatch(value) else 0.0
    return float(value)


def export_line(text: str) -> dict[str, Any]:
    """One series of VictoriaMetrics' export, whose values may be ``+Inf``, ``-Inf``, ``NaN``."""
    values_at = text.rindex('"values":[')  # label text before it has its quotes escaped
    values = re.sub(r"([-+])Inf", r"\1Infinity", text[values_at:]).replace("+Infinity", "Infinity")
    return json.loads(text[:values_at] + values)


def read_vm(victoria: VictoriaMetrics, times_ms: set[int]) -> dict[tuple, list[float]]:
    """Every sample stored at ``times_ms``: ``(time, name, labels) -> values``."""
    stored: dict[tuple, list[float]] = {}
    lowest_s, highest_s = min(times_ms) // 1000, max(times_ms) // 1000 + 1
    victoria.flush()
    query = {"match[]": '{__name__=~".*"}', "start": lowest_s, "end": highest_s}
    response = http_request("GET", f"{victoria.url}/api/v1/export?{urllib.parse.urlencode(query)}")
    assert response.status == 200, response.body
    for series in map(export_line, filter(None, response.body.decode().split("\n"))):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        for time_ms, value in zip(series["timestamps"], series["values"], strict=True):
            if time_ms in times_ms:
                stored.setdefault((time_ms, name, frozenset(labels.items())), []).append(value)
    return stored


@SERVER_SETTINGS
@given(points=st.builds(lambda: next(_BATCH_STARTS)).flatmap(random_points))
@example(points=line_breaks(1_500_000_000_000_000_000))
def test_random_points_read_back_from_victoriametrics_as_documented(
    victoria: VictoriaMetrics, points
):
    """Each field is a series ``<measurement>_<field key>`` with the point's tags; its value is
    the number (VictoriaMetrics keeps about 12 significant digits, so values compare to 1e-11)."""
    encoder = LineEncoder("victoriametrics")
    lines = encoder.encode_lines(points)
    expected = [expected_point(p, "victoriametrics") for p in points]
    response = victoria.write_lines(join_lines(lines))
    assert response.status == 204, response.body
    stored = read_vm(victoria, {p.time_ns // 10**6 for p in points})

    wanted: dict[tuple, float] = {}
    for point, stored_as in zip(points, expected, strict=True):
        measurement, tags, fields, _, _ = stored_as
        for key, value in fields.items():
            series = (point.time_ns // 10**6, f"{measurement}_{key}", frozenset(tags.items()))
            if not math.isnan(vm_value(value)):
                wanted[series] = vm_value(value)
    assert stored.keys() == wanted.keys()
    for series, value in wanted.items():
        (got,) = stored[series]
        assert math.isclose(got, value, rel_tol=1e-11), (series, got, value)
    check_counts(encoder, points, expected, lines)


def test_time_range_bounds_are_accepted_by_influxdb(influx_db):
    points = [Point("m", t, {}, {"x": 1}) for t in (MIN_TIME_NS, MAX_TIME_NS)]
    response = influx_db.write_lines(join_lines(LineEncoder().encode_lines(points)))
    assert response.status == 204, response.body
    assert [row["time"] for row in influx_db.query('SELECT * FROM "m"')] == [
        MIN_TIME_NS,
        MAX_TIME_NS,
    ]


NUMBER = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(min_value=-1e100, max_value=1e100).filter(lambda x: x == 0 or abs(x) > 1e-100),
)


@settings(SERVER_SETTINGS, max_examples=5)
@given(numbers=st.lists(NUMBER, min_size=20, max_size=50))
def test_random_numbers_read_back_from_victoriametrics(victoria: VictoriaMetrics, numbers):
    """VictoriaMetrics keeps about 12 significant digits, so values compare to 1e-11.

    Each number is its own series: VictoriaMetrics scales the values of a block of one
    series to one decimal exponent, which would round small values next to large ones.
    """
    measurement = unique_name("numbers")
    start_ns = 1_700_000_000_000_000_000
    points = [
        Point(measurement, start_ns + i * 10**6, {"i": str(i)}, {"v": n})
        for i, n in enumerate(numbers)
    ]
    response = victoria.write_lines(join_lines(LineEncoder().encode_lines(points)))
    assert response.status == 204, response.body

    stored = {
        int(series["metric"]["i"]): (series["timestamps"], series["values"])
        for series in victoria.export(f'{{__name__="{measurement}_v"}}')
    }
    assert sorted(stored) == list(range(len(numbers)))
    for i, sent in enumerate(numbers):
        timestamps, (got,) = stored[i]
        assert timestamps == [points[i].time_ns // 10**6]
        assert math.isclose(got, sent, rel_tol=1e-11), (got, sent)


def test_line_too_long_for_victoriametrics_is_cut_not_failing_the_batch(victoria):
    """A 300,000-character string would make VictoriaMetrics refuse the whole request."""
    series, start_ns = unique_name("long"), next(_BATCH_STARTS)
    points = [
        Point(series, start_ns, {}, {"s": "x" * 300_000, "n": 1}),
        Point(series, start_ns + 10**6, {}, {"n": 2}),
    ]
    body = join_lines(LineEncoder("victoriametrics").encode_lines(points))
    assert victoria.write_lines(body).status == 204
    assert [s["values"] for s in victoria.export(f'{{__name__="{series}_n"}}')] == [[1, 2]]
    assert [s["values"] for s in victoria.export(f'{{__name__="{series}_s"}}')] == [[0]]


def test_string_values_are_stored_by_victoriametrics_as_the_number_they_read_as(victoria):
    texts = ["12.5", "-1e3", "+.5", "+1", "1.", "5.e1", "007", "Infinity", "-inf", "NaN", " 1", "x"]
    series, start_ns = unique_name("text"), next(_BATCH_STARTS)
    points = [Point(series, start_ns, {"i": str(i)}, {"s": t}) for i, t in enumerate(texts)]
    body = join_lines(LineEncoder("victoriametrics").encode_lines(points))
    assert victoria.write_lines(body).status == 204
    stored = read_vm(victoria, {start_ns // 10**6})
    got = {int(dict(labels)["i"]): value for (_, _, labels), (value,) in stored.items()}
    wanted = {i: vm_value(text) for i, text in enumerate(texts)}
    assert got == {i: value for i, value in wanted.items() if not math.isnan(value)}
