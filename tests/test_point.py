"""Line-protocol encoding: one test per rule, then random points through real servers."""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from servers import InfluxDatabase, InfluxDB1, VictoriaMetrics, unique_name

from luna_monitoring.core.point import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    LineEncoder,
    Point,
    as_points,
    join_lines,
)
from luna_monitoring.core.schema import INT64_MAX, INT64_MIN


def encode(*points: Point) -> list[str]:
    """The lines of ``points`` from a fresh encoder."""
    return LineEncoder().encode_lines(points)


def line(series: str = "m", tags: Mapping | None = None, fields: Mapping | None = None) -> str:
    """The one line of a point at time 1 (fields default to ``f=1i``).

    Encoded twice by one encoder: first with empty caches, then with its tag set and field
    keys cached, which takes the inline path; both must agree.
    """
    encoder = LineEncoder()
    point = Point(series, 1, tags or {}, {"f": 1} if fields is None else fields)
    first, again = encoder.encode_lines([point]), encoder.encode_lines([point])
    assert len(first) == 1 and again == first, (first, again)
    return first[0]


class TestMeasurement:
    def test_comma_and_space_are_escaped(self):
        assert line("a,b c") == r"a\,b\ c f=1i 1"

    def test_equals_sign_and_quote_are_written_as_they_are(self):
        assert line('a=b"c') == 'a=b"c f=1i 1'

    def test_leading_hash_gets_a_backslash_so_the_line_is_no_comment(self):
        assert line("#m") == r"\#m f=1i 1"

    def test_hash_after_the_start_is_written_as_it_is(self):
        assert line("m#1") == "m#1 f=1i 1"

    def test_leading_tabs_and_nuls_are_removed(self):
        assert line("\t\0\tm\tn") == "m\tn f=1i 1"

    def test_leading_space_is_escaped_not_removed(self):
        assert line(" m") == r"\ m f=1i 1"


class TestTags:
    def test_comma_equals_and_space_are_escaped_in_keys_and_values(self):
        assert line(tags={"k,=y ": "v,=w "}) == r"m,k\,\=y\ =v\,\=w\  f=1i 1"

    def test_tags_are_sorted_by_escaped_key(self):
        assert line(tags={"b": "2", "a": "1", "a ": "3"}) == r"m,a=1,a\ =3,b=2 f=1i 1"

    def test_empty_and_none_values_are_left_out(self):
        assert line(tags={"a": "", "b": None, "c": "x"}) == "m,c=x f=1i 1"

    def test_empty_key_is_left_out(self):
        assert line(tags={"": "x"}) == "m f=1i 1"

    def test_int_float_and_bool_values_are_written_with_str(self):
        assert line(tags={"i": 7, "f": 1.5, "b": True}) == "m,b=True,f=1.5,i=7 f=1i 1"

    def test_str_subclass_value_is_written_as_its_text(self):
        class Status(enum.StrEnum):
            OK = "ok"

        assert line(tags={"s": Status.OK}) == "m,s=ok f=1i 1"


class TestFieldKeys:
    def test_comma_equals_and_space_are_escaped(self):
        assert line(fields={"k,=y ": 1}) == r"m k\,\=y\ =1i 1"

    def test_leading_tabs_and_nuls_are_removed(self):
        assert line(fields={"\t\0k": 1}) == "m k=1i 1"

    def test_quote_and_hash_are_written_as_they_are(self):
        assert line(fields={'#k"': 1}) == 'm #k"=1i 1'


class TestNamesAll:
    """Rules shared by the measurement, tag keys, tag values and field keys."""

    @pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\r\nb"])
    def test_line_breaks_become_spaces(self, text):
        spaces = r"\ " * (len(text) - 2)
        assert line(text, {text: text}, {text: 1}) == (
            f"a{spaces}b,a{spaces}b=a{spaces}b a{spaces}b=1i 1"
        )

    def test_trailing_backslashes_are_removed(self):
        assert line("m\\", {"k\\\\": "C:\\dir\\"}, {"f\\": 1}) == r"m,k=C:\dir f=1i 1"

    @pytest.mark.parametrize(
        ("text", "written"),
        [("a\\,b", r"a\,b"), ("a\\ b", r"a\ b"), ("a\\=b", r"a\=b"), ('a\\\\"b', 'a"b')],
    )
    def test_backslashes_before_comma_space_equals_or_quote_are_removed(self, text, written):
        measurement = written.replace("\\=", "=")
        assert line(text, {text: text}, {text: 1}) == (
            f"{measurement},{written}={written} {written}=1i 1"
        )

    def test_other_backslashes_are_kept(self):
        assert line("a\\b", {"\\\\k": "x\\\\y"}, {"f\\#": 1}) == r"a\b,\\k=x\\y f\#=1i 1"

    def test_tab_quote_and_non_ascii_text_are_written_as_they_are(self):
        assert line("é\t😀", {'ключ"': "値\t"}, {"ñ": 1}) == 'é\t😀,ключ"=値\t ñ=1i 1'


class TestFieldValues:
    def test_string_is_quoted_with_quotes_and_backslashes_escaped(self):
        assert line(fields={"s": 'say "hi" C:\\dir\\'}) == r'm s="say \"hi\" C:\\dir\\" 1'

    def test_string_keeps_line_breaks_tabs_commas_and_non_ascii(self):
        assert line(fields={"s": "a\nb\r\tc, d=é"}) == 'm s="a\nb\r\tc, d=é" 1'

    def test_empty_string_is_written(self):
        assert line(fields={"s": ""}) == 'm s="" 1'

    def test_integer_gets_i_and_int64_bounds_are_written(self):
        assert line(fields={"a": INT64_MIN, "b": 0, "c": INT64_MAX}) == (
            f"m a={INT64_MIN}i,b=0i,c={INT64_MAX}i 1"
        )

    @pytest.mark.parametrize(
        ("value", "written"),
        [
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e-7, "1e-7"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (0.5105105169659736, "0.5105105169659736"),
        ],
    )
    def test_float_is_written_as_its_shortest_exact_repr(self, value, written):
        """orjson before 3.11.7 spells the exponent without '+'; InfluxDB reads both."""
        assert line(fields={"x": value}).replace("e+", "e") == f"m x={written} 1".replace("e+", "e")
        assert float(written) == value

    def test_bool_is_true_or_false(self):
        assert line(fields={"t": True, "f": False}) == "m t=true,f=false 1"

    def test_none_nan_and_infinite_fields_are_left_out(self):
        encoder = LineEncoder()
        encoder.encode_lines([Point("m", 1, {}, dict.fromkeys("abcde", 0.5))])  # keys cached
        fields = {"a": None, "b": math.nan, "c": math.inf, "d": -math.inf, "e": 2}
        assert encoder.encode_lines([Point("m", 2, {}, fields)]) == ["m e=2i 2"]
        assert line(fields=fields) == "m e=2i 1"

    def test_subclasses_are_written_as_their_base_type(self):
        class Code(enum.IntEnum):
            NOT_FOUND = 404

        class Seconds(float):
            pass

        class Name(enum.StrEnum):
            A = "a"

        fields = {"i": Code.NOT_FOUND, "f": Seconds(0.25), "s": Name.A}
        assert line(fields=fields) == 'm i=404i,f=0.25,s="a" 1'


class TestSkippedPoints:
    def test_point_without_fields_is_not_written_and_counted(self):
        encoder = LineEncoder()
        points = [
            Point("m", 1, {}, {}),
            Point("m", 2, {}, {"a": None, "b": math.nan}),
            Point("m", 3, {}, {"a": 1}),
        ]
        assert encoder.encode_lines(points) == ["m a=1i 3"]
        assert (encoder.points_without_fields, encoder.points_invalid) == (2, 0)

    @pytest.mark.parametrize(
        "point",
        [
            Point("m", 1, {"t": "v"}, {"x": [1]}),
            Point("m", 1, {"t": "v"}, {"x": b"bytes"}),
            Point("m", 1, {"t": "v"}, {"x": 2**63}),
            Point("m", 1, {"t": "v"}, {"x": -(2**63) - 1}),
            Point("m", 1, {"t": ["list"]}, {"x": 1}),
            Point("m", 1, {"t": object()}, {"x": 1}),
            Point("m", 1.5, {"t": "v"}, {"x": 1}),
            Point("m", "1", {"t": "v"}, {"x": 1}),
            Point("m", True, {"t": "v"}, {"x": 1}),
            Point("m", None, {"t": "v"}, {"x": 1}),
            Point("m", MIN_TIME_NS - 1, {"t": "v"}, {"x": 1}),
            Point("m", MAX_TIME_NS + 1, {"t": "v"}, {"x": 1}),
            Point("", 1, {"t": "v"}, {"x": 1}),
            Point("\\", 1, {"t": "v"}, {"x": 1}),
            Point(None, 1, {"t": "v"}, {"x": 1}),
            Point("m", 1, {"t": "v"}, {"\\": 1}),
            Point("m", 1, {"t": "v"}, {7: 1}),
            Point("m", 1, {7: "v"}, {"x": 1}),
            Point("m", 1, {"a": "1", "a\\": "2"}, {"x": 1}),
            Point("m", 1, {"t": "v"}, {"x": 1, "x\\": 2}),
            Point("m", 1, None, {"x": 1}),
            Point("m", 1, {"t": "v"}, None),
            ("m", 1, {"t": "v"}),
        ],
        ids=repr,
    )
    def test_invalid_point_is_counted_without_breaking_the_batch(self, point):
        """The good point before it fills the caches the invalid one would hit."""
        encoder = LineEncoder()
        good = Point("m", 2, {"t": "v"}, {"x": 1})
        assert encoder.encode_lines([good, point, good]) == ["m,t=v x=1i 2"] * 2
        assert (encoder.points_invalid, encoder.points_without_fields) == (1, 0)

    def test_time_range_is_influxdbs(self):
        points = [Point("m", t, {}, {"x": 1}) for t in (MIN_TIME_NS, MAX_TIME_NS)]
        assert encode(*points) == [f"m x=1i {MIN_TIME_NS}", f"m x=1i {MAX_TIME_NS}"]

    def test_unsupported_value_is_invalid_even_next_to_none_and_nan(self):
        encoder = LineEncoder()
        assert encoder.encode_lines([Point("m", 1, {}, {"a": None, "b": {}})]) == []
        assert encoder.points_invalid == 1


class TestCaches:
    def test_same_values_under_other_keys_get_their_own_prefix(self):
        points = [Point("m", 1, {"a": "x"}, {"f": 1}), Point("m", 2, {"b": "x"}, {"f": 1})]
        assert encode(*points) == ["m,a=x f=1i 1", "m,b=x f=1i 2"]

    def test_same_tags_in_another_series_get_their_own_prefix(self):
        points = [Point("m", 1, {"a": "x"}, {"f": 1}), Point("n", 2, {"a": "x"}, {"f": 1})]
        assert encode(*points) == ["m,a=x f=1i 1", "n,a=x f=1i 2"]

    def test_equal_values_of_other_types_are_written_by_their_own_text(self):
        points = [Point("m", t, {"a": v}, {"f": 1}) for t, v in enumerate([True, 1, 1.0, "1"])]
        written = [text.split()[0] for text in encode(*points)]
        assert written == ["m,a=True", "m,a=1", "m,a=1.0", "m,a=1"]

    def test_shared_read_only_tags_serve_each_series_its_own_prefix(self):
        tags = MappingProxyType({"route": "GET:/", "service": "s"})
        equal = MappingProxyType({"route": "GET:/", "service": "s"})
        encoder = LineEncoder()
        points = [("m", 1, tags, {"f": 1}), ("m", 2, tags, {"f": 2}), ("n", 3, tags, {"f": 3})]
        lines = encoder.encode_lines([*points, ("m", 4, tags, {"f": 4}), ("n", 5, equal, {"f": 5})])
        assert lines == [
            "m,route=GET:/,service=s f=1i 1",
            "m,route=GET:/,service=s f=2i 2",
            "n,route=GET:/,service=s f=3i 3",
            "m,route=GET:/,service=s f=4i 4",
            "n,route=GET:/,service=s f=5i 5",
        ]

    def test_a_changed_field_key_is_checked_in_every_point(self):
        encoder = LineEncoder()
        first = encoder.encode_lines([Point("m", 1, {}, {"a\\": 1})])
        second = encoder.encode_lines([Point("m", 2, {}, {"a\\": 1, "a": 2})])
        assert (first, second, encoder.points_invalid) == (["m a=1i 1"], [], 1)


def test_join_lines_makes_one_utf8_body_with_lone_surrogates_replaced():
    lines = encode(Point("m", 1, {"t": "é"}, {"s": "x\ud800y"}), Point("m", 2, {}, {"f": 1}))
    assert join_lines(lines) == 'm,t=é s="x?y" 1\nm f=1i 2'.encode()


def test_time_range_bounds_are_accepted_by_influxdb(influx_db):
    points = [Point("m", t, {}, {"x": 1}) for t in (MIN_TIME_NS, MAX_TIME_NS)]
    response = influx_db.write_lines(join_lines(encode(*points)))
    assert response.status == 204, response.body
    assert [row["time"] for row in influx_db.query('SELECT * FROM "m"')] == [
        MIN_TIME_NS,
        MAX_TIME_NS,
    ]


# --------------------------------------------------------------------------------------
# Random points through the real servers
# --------------------------------------------------------------------------------------

ESCAPED_IN_NAMES = ', ="'


def stored_name(text: str, *, skips_leading: bool = False, is_measurement: bool = False) -> str:
    """What InfluxDB stores for a name, by the documented rules (written independently)."""
    kept: list[str] = []
    for char in text.replace("\n", " ").replace("\r", " "):
        if char in ESCAPED_IN_NAMES:
            while kept and kept[-1] == "\\":
                kept.pop()
        kept.append(char)
    while kept and kept[-1] == "\\":
        kept.pop()
    name = "".join(kept)
    if skips_leading:
        name = name.lstrip("\t\0")
    if is_measurement and name.startswith("#"):
        name = "\\" + name
    return name


def expected_point(point: Point) -> tuple[str, dict, dict] | None:
    """``(measurement, tags, fields)`` as InfluxDB should return them; ``None`` if skipped."""
    measurement = stored_name(point.series, skips_leading=True, is_measurement=True)
    tag_pairs = [(stored_name(k), stored_name(v)) for k, v in point.tags.items()]
    tag_pairs = [(k, v) for k, v in tag_pairs if k and v]
    field_pairs = [
        (stored_name(k, skips_leading=True), v)
        for k, v in point.fields.items()
        if v is not None and not (isinstance(v, float) and not math.isfinite(v))
    ]
    tags, fields = dict(tag_pairs), dict(field_pairs)
    if (
        not measurement
        or len(tags) < len(tag_pairs)
        or len(fields) < len(field_pairs)
        or "" in fields
        or not fields
    ):
        return None
    return measurement, tags, fields


# Characters the rules are about, drawn often, mixed with any other Unicode text.
SPECIAL = st.sampled_from(list('\\\\\\, ="\n\r\t#\0'))
NAME = st.lists(st.one_of(SPECIAL, st.characters(exclude_categories=("Cs",))), max_size=8).map(
    "".join
)  # st.text would draw the special characters far more rarely
KEY = NAME.filter(lambda k: stored_name(k, skips_leading=True) != "time")  # reserved in 1.x
MEASUREMENT = NAME.map(lambda m: m.replace("\0", ""))  # InfluxQL cannot name NUL
FIELD_VALUE = st.one_of(
    st.sampled_from([None, math.nan, math.inf, -math.inf]),
    NAME,
    st.text(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@st.composite
def random_points(draw: st.DrawFn) -> list[Point]:
    """30-60 points, each in its own measurement (a unique suffix) at its own time."""
    count = draw(st.integers(30, 60))
    return [
        Point(
            draw(MEASUREMENT) + f"_{index}",
            draw(st.integers(-(2**62), 2**62)),
            draw(st.dictionaries(KEY, NAME, max_size=4)),
            draw(st.dictionaries(KEY, FIELD_VALUE, min_size=1, max_size=4)),
        )
        for index in range(count)
    ]


ENCODER_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@ENCODER_SETTINGS
@given(points=random_points())
def test_points_encode_the_same_with_warm_caches(points):
    """The inline path (caches filled) and the full path (first sight) agree."""
    encoder = LineEncoder()
    first = encoder.encode_lines(points)
    skipped = (encoder.points_invalid, encoder.points_without_fields)
    assert encoder.encode_lines(points) == first
    assert (encoder.points_invalid, encoder.points_without_fields) == tuple(2 * n for n in skipped)


@ENCODER_SETTINGS
@given(points=random_points())
def test_read_only_tag_sets_encode_as_their_dicts(points):
    """Tags as shared ``MappingProxyType`` (found by identity once seen) encode the same."""
    proxies = {id(tags): MappingProxyType(tags) for _, _, tags, _ in points}
    shared = [(s, t, proxies[id(tags)], f) for s, t, tags, f in points]
    expected = LineEncoder().encode_lines(points)
    encoder = LineEncoder()
    assert encoder.encode_lines(shared) == expected
    assert encoder.encode_lines(shared) == expected


@contextlib.contextmanager
def fresh_database(server: InfluxDB1) -> Iterator[InfluxDatabase]:
    """A new database on ``server``, dropped afterwards."""
    database = InfluxDatabase(server, unique_name("point"))
    server.create_database(database.name)
    try:
        yield database
    finally:
        server.drop_database(database.name)


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_back(database: InfluxDatabase, measurements: list[str]) -> dict[str, tuple]:
    """``(time, tags, fields)`` of the one point stored in each of ``measurements``.

    One ``SELECT`` per measurement, all in one request: a single ``SELECT`` over several
    measurements would drop fields whose type differs between them.
    """
    if not measurements:
        return {}
    statements = [f"SELECT * FROM {quote_identifier(m)} GROUP BY *" for m in measurements]
    results = database.server.execute(";".join(statements), database.name)
    stored = {}
    for measurement, result in zip(measurements, results, strict=True):
        for series in result.get("series", []):
            (row,) = series["values"]
            fields = dict(zip(series["columns"][1:], row[1:], strict=True))
            stored[measurement] = (row[0], series.get("tags", {}), fields)
    return stored


def same_field_value(got: Any, sent: Any) -> bool:
    """InfluxDB's JSON has floats with integral values as ints; everything else is exact."""
    if type(sent) is float:
        return type(got) in (int, float) and float(got) == sent
    return type(got) is type(sent) and got == sent


# Each example is a server round trip: no shrinking (minutes); failures name their point.
SERVER_SETTINGS = settings(
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(SERVER_SETTINGS, max_examples=15)
@given(points=random_points())
def test_random_points_read_back_from_influxdb_as_documented(influxdb, points):
    encoder = LineEncoder()
    lines = encoder.encode_lines(points)
    expected = [expected_point(p) for p in points]
    with fresh_database(influxdb) as database:
        response = database.write_lines(join_lines(lines))
        assert response.status == 204, response.body
        measurements = [row["name"] for row in database.query("SHOW MEASUREMENTS")]
        stored = read_back(database, measurements)

    assert sorted(measurements) == sorted(e[0] for e in expected if e)
    for point, wanted in zip(points, expected, strict=True):
        if wanted:
            measurement, tags, fields = wanted
            time_ns, got_tags, got_fields = stored[measurement]
            assert (time_ns, got_tags, got_fields.keys()) == (point.time_ns, tags, fields.keys()), (
                point
            )
            for key, value in fields.items():
                assert same_field_value(got_fields[key], value), (point, key)
    skipped = expected.count(None)
    assert len(lines) == len(points) - skipped
    assert encoder.points_invalid + encoder.points_without_fields == skipped


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


def test_as_points_names_plain_tuples_and_keeps_points():
    named = Point("m", 1, {"t": "a"}, {"x": 1})
    plain = ("m", 2, {"t": "b"}, {"x": 2})
    first, second = as_points([named, plain])
    assert first is named
    assert type(second) is Point and second.time_ns == 2 and second == plain
