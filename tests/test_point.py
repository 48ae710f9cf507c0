r"""Line-protocol encoding: one test per rule, named after it, comparing a whole line.

``TestInfluxDB*`` and ``TestVictoriaMetrics`` hold the rules of each dialect,
``TestInfluxDBParserRules`` InfluxDB's own line-protocol rules, ``TestInfluxdbClientPoint``
influxdb-client-python's ``Point`` as an oracle where the rules coincide and each place
they differ. What the servers store is in ``test_point_servers.py``.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from implementations import KINDS, swapped
from influxdb_client.client.write.point import Point as ClientPoint

from luna_monitoring.core import point as point_module
from luna_monitoring.core.point import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    VM_MAX_LINE_BYTES,
    VM_MAX_STRING_CHARS,
    CountFields,
    Dropped,
    LineEncoder,
    Point,
    as_points,
    join_lines,
)
from luna_monitoring.core.schema import INT64_MAX, INT64_MIN

VM = "victoriametrics"
B = "\\"  # one backslash, for f-strings


@pytest.fixture(scope="module", params=KINDS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every rule twice: with the compiled encoder (``core/_speedups.c``) and in pure Python."""
    yield from swapped(request.param, point_module, "_speedups", None)


def encode(*points: Point, dialect: str = "influxdb") -> list[str]:
    """The lines of ``points`` from a fresh encoder."""
    return LineEncoder(dialect).encode_lines(points)


def line(
    series: str = "m",
    tags: Mapping | None = None,
    fields: Mapping | None = None,
    dialect: str = "influxdb",
) -> str:
    """The one line of a point at time 1 (fields default to ``f=1i``).

    Encoded twice by one encoder: first with empty caches, then with its tag set and field
    keys cached, which takes the inline path; both must agree.
    """
    encoder = LineEncoder(dialect)
    point = Point(series, 1, tags or {}, {"f": 1} if fields is None else fields)
    first, again = encoder.encode_lines([point]), encoder.encode_lines([point])
    assert len(first) == 1 and again == first, (first, again)
    return first[0]


def counted(point: Point, dialect: str = "influxdb") -> tuple[list[str], int, int]:
    """The lines of ``point`` twice, and the tags and fields left out (twice as many)."""
    encoder = LineEncoder(dialect)
    lines = encoder.encode_lines([point, point])
    return lines, encoder.tags_dropped, encoder.fields_dropped


class TestBothDialects:
    @pytest.mark.parametrize("dialect", ["influxdb", VM])
    def test_line_feed_in_names_is_written_as_backslash_n(self, dialect):
        assert line("a\nb", {"k\n": "v\n"}, {"f\n": 1}, dialect) == r"a\nb,k\n=v\n f\n=1i 1"

    @pytest.mark.parametrize("dialect", ["influxdb", VM])
    def test_line_feed_in_string_value_is_written_as_backslash_n(self, dialect):
        assert line(fields={"s": "a\nb\n"}, dialect=dialect) == r'm s="a\nb\n" 1'

    @pytest.mark.parametrize("dialect", ["influxdb", VM])
    def test_carriage_return_tab_and_other_breaks_are_written_as_they_are(self, dialect):
        text = "a\rb\tc\x0bd\x0ce\x85f\u2028g"
        assert line(text, {"k": text}, {"s": text}, dialect) == f'{text},k={text} s="{text}" 1'

    @pytest.mark.parametrize("dialect", ["influxdb", VM])
    def test_quote_and_backslash_in_string_value_get_a_backslash(self, dialect):
        fields = {"s": 'say "hi" C:\\dir\\'}
        assert line(fields=fields, dialect=dialect) == r'm s="say \"hi\" C:\\dir\\" 1'

    @pytest.mark.parametrize("dialect", ["influxdb", VM])
    def test_leading_hash_of_measurement_gets_a_backslash(self, dialect):
        assert line("#m", dialect=dialect) == r"\#m f=1i 1"

    @pytest.mark.parametrize("dialect", ["influxdb", VM])
    def test_leading_tabs_and_nuls_of_measurement_and_field_keys_are_removed(self, dialect):
        assert line("\t\0\tm\tn", fields={"\t\0k": 1}, dialect=dialect) == "m\tn k=1i 1"

    def test_injected_line_stays_in_its_string_value(self):
        fields = {"errors": "boom\ninjected,host=evil value=666 1"}
        assert encode(Point("m", 1, {}, fields), dialect=VM) == [
            r'm errors="boom\ninjected,host=evil value=666 1" 1'
        ]


class TestInfluxDBMeasurement:
    def test_comma_and_space_are_escaped(self):
        assert line("a,b c") == r"a\,b\ c f=1i 1"

    def test_equals_sign_and_quote_are_written_as_they_are(self):
        assert line('a=b"c') == 'a=b"c f=1i 1'

    def test_hash_after_the_start_is_written_as_it_is(self):
        assert line("m#1") == "m#1 f=1i 1"

    def test_leading_space_is_escaped_not_removed(self):
        assert line(" m") == r"\ m f=1i 1"

    @pytest.mark.parametrize("text", ["a\\,b", "a\\\\ b", "a\\=b", 'a\\\\\\"b', "a\\"])
    def test_backslashes_before_comma_space_equals_quote_or_the_end_are_removed(self, text):
        """InfluxDB 1.6 unescapes a measurement twice: they would not read back."""
        expected = text.replace("\\", "").replace(",", "\\,").replace(" ", "\\ ")
        assert line(text) == f"{expected} f=1i 1"

    def test_other_backslashes_are_kept(self):
        assert line("a\\b\\\\c") == "a\\b\\\\c f=1i 1"


class TestInfluxDBTags:
    def test_comma_equals_and_space_are_escaped_in_keys_and_values(self):
        assert line(tags={"k,=y ": "v,=w "}) == r"m,k\,\=y\ =v\,\=w\  f=1i 1"

    @pytest.mark.parametrize("run", [1, 2, 3])
    def test_backslash_runs_before_comma_equals_and_quote_are_kept(self, run):
        text = "\\" * run
        key, value = f"a{text},b{text}=c", f'x{text},y{text}=z{text}"'
        written_key, written_value = f"a{text}\\,b{text}\\=c", f'x{text}\\,y{text}\\=z{text}"'
        assert line(tags={key: value}) == f"m,{written_key}={written_value} f=1i 1"

    @pytest.mark.parametrize(("run", "kept"), [(1, 0), (2, 2), (3, 2), (4, 4)])
    def test_odd_backslash_run_before_space_loses_one_backslash(self, run, kept):
        """InfluxDB's line splitter pairs backslashes: an odd run would unescape the space."""
        text, written = f"a{B * run} b", f"a{B * kept}{B} b"
        assert line(tags={text: text}) == f"m,{written}={written} f=1i 1"

    def test_trailing_backslashes_are_removed(self):
        assert line(tags={"k\\\\": "C:\\dir\\"}) == r"m,k=C:\dir f=1i 1"

    def test_tags_are_sorted_by_escaped_key(self):
        assert line(tags={"b": "2", "a": "1", "a ": "3"}) == r"m,a=1,a\ =3,b=2 f=1i 1"

    def test_empty_and_none_values_and_empty_keys_are_left_out(self):
        assert line(tags={"a": "", "b": None, "c": "x", "": "y", "d": "\\"}) == "m,c=x f=1i 1"

    def test_int_float_and_bool_values_are_written_with_str(self):
        assert line(tags={"i": 7, "f": 1.5, "b": True}) == "m,b=True,f=1.5,i=7 f=1i 1"

    def test_str_subclass_value_is_written_as_its_text(self):
        class Status(enum.StrEnum):
            OK = "ok"

        assert line(tags={"s": Status.OK}) == "m,s=ok f=1i 1"

    def test_tag_key_time_is_left_out_and_counted(self):
        """InfluxDB 1.x rejects a point with a tag key ``time``."""
        point = Point("m", 1, {"time": "x", "time\\": "y", "k": "v"}, {"f": 1})
        assert counted(point) == (["m,k=v f=1i 1"] * 2, 4, 0)


class TestInfluxDBFieldKeys:
    def test_comma_equals_space_and_quote_are_escaped(self):
        assert line(fields={'k,=y "': 1}) == r"m k\,\=y\ \"=1i 1"

    def test_hash_is_written_as_it_is(self):
        assert line(fields={"#k": 1}) == "m #k=1i 1"

    @pytest.mark.parametrize(("run", "kept"), [(1, 0), (2, 2), (3, 2)])
    def test_odd_backslash_run_before_comma_space_or_equals_loses_one_backslash(self, run, kept):
        """InfluxDB's field parser pairs backslashes: an odd run would unescape the delimiter."""
        text, written = "\\" * run, "\\" * kept
        assert line(fields={f"a{text},b{text} c{text}=d": 1}) == (
            f"m a{written}\\,b{written}\\ c{written}\\=d=1i 1"
        )

    @pytest.mark.parametrize("run", [1, 2])
    def test_backslash_run_before_quote_is_kept(self, run):
        assert line(fields={f'a{B * run}"b': 1}) == f'm a{B * run}{B}"b=1i 1'

    def test_trailing_backslashes_are_removed(self):
        assert line(fields={"k\\\\": 1}) == "m k=1i 1"

    def test_field_key_time_is_left_out_and_counted(self):
        """InfluxDB 1.x silently drops a field called ``time``."""
        assert counted(Point("m", 1, {}, {"time": 1, "f": 2})) == (["m f=2i 1"] * 2, 0, 2)

    def test_field_keys_that_become_the_same_keep_the_first(self):
        point = Point("m", 1, {}, {"a": 1, "a\\": 2, "\ta": 3, "b": 4})
        assert counted(point) == (["m a=1i,b=4i 1"] * 2, 0, 4)


class TestVictoriaMetrics:
    def test_backslashes_in_names_are_doubled(self):
        """VictoriaMetrics reads ``\\`` as one backslash, so every name reads back as given."""
        text = "a\\ b\\,c\\=d\\"
        written, in_measurement = r"a\\\ b\\\,c\\\=d\\", r"a\\\ b\\\,c\\=d\\"
        expected = f"{in_measurement},{written}={written} {written}=1i 1"
        assert line(text, {text: text}, {text: 1}, VM) == expected

    def test_comma_and_space_are_escaped_in_names_and_equals_but_in_the_measurement(self):
        assert line("a,= b", {"k,= ": "v,= "}, {"f,= ": 1}, VM) == (
            r"a\,=\ b,k\,\=\ =v\,\=\  f\,\=\ =1i 1"
        )

    def test_quote_in_field_key_gets_a_backslash(self):
        """A bare ``"`` in a field key makes VictoriaMetrics drop the point; it stores ``\\"``."""
        assert line('m"', {'k"': 'v"'}, {'f"': 1}, VM) == r'm",k"=v" f\"=1i 1'

    def test_tag_key_name_is_left_out_and_counted(self):
        """VictoriaMetrics ignores a ``__name__`` tag."""
        point = Point("m", 1, {"__name__": "evil", "k": "v"}, {"f": 1})
        assert counted(point, VM) == (["m,k=v f=1i 1"] * 2, 2, 0)

    def test_time_is_an_ordinary_key(self):
        assert line(tags={"time": "x"}, fields={"time": 1}, dialect=VM) == "m,time=x time=1i 1"

    def test_string_values_of_a_line_over_the_limit_are_cut(self):
        """VictoriaMetrics stores no text, and a line over 256 KiB fails the whole request."""
        text = "é" * (VM_MAX_LINE_BYTES // 2)
        assert line(fields={"s": text, "n": 1}, dialect=VM) == (
            f'm s="{text[:VM_MAX_STRING_CHARS]}",n=1i 1'
        )
        assert line(fields={"s": text}) == f'm s="{text}" 1'

    def test_string_values_of_a_line_under_the_limit_are_kept(self):
        text = "é" * (VM_MAX_LINE_BYTES // 8)
        assert line(fields={"s": text}, dialect=VM) == f'm s="{text}" 1'

    def test_line_over_the_limit_with_cut_strings_is_invalid_not_written(self):
        """Here four tags of 40,000 two-byte characters: 320 KB of tags."""
        big = Point("m", 1, {f"k{i}": "é" * 40_000 for i in range(4)}, {"f": 1})
        encoder = LineEncoder(VM)
        assert encoder.encode_lines([big, Point("m", 2, {}, {"f": 1})]) == ["m f=1i 2"]
        assert encoder.points_invalid == 1
        assert len(join_lines(encode(big))) > VM_MAX_LINE_BYTES


class TestInfluxDBParserRules:
    """InfluxDB's line-protocol rules, each as a point and the whole line that writes it."""

    @pytest.mark.parametrize(
        ("series", "tags", "field", "written"),
        [
            ("cpu,main", {"regions": "east"}, "value", r"cpu\,main,regions=east value"),
            ("cpu load", {"region": "east"}, "value", r"cpu\ load,region=east value"),
            ("cpu", {"region,zone": "east"}, "value", r"cpu,region\,zone=east value"),
            ("cpu", {"region zone": "east"}, "value", r"cpu,region\ zone=east value"),
            ("cpu", {"regions": "east,west"}, "value", r"cpu,regions=east\,west value"),
            ("cpu", {"regions": "east west"}, "value", r"cpu,regions=east\ west value"),
            ("cpu", {"regions=": "east=west"}, "value", r"cpu,regions\==east\=west value"),
            ("cpu", {}, "value 1", r"cpu value\ 1"),
            ("cpu", {}, "value,1", r"cpu value\,1"),
            ("cpu", {}, "value=1", r"cpu value\=1"),
        ],
        ids=[
            "comma_in_measurement_is_escaped",
            "space_in_measurement_is_escaped",
            "comma_in_tag_key_is_escaped",
            "space_in_tag_key_is_escaped",
            "comma_in_tag_value_is_escaped",
            "space_in_tag_value_is_escaped",
            "equals_in_tag_key_and_value_is_escaped",
            "space_in_field_key_is_escaped",
            "comma_in_field_key_is_escaped",
            "equals_in_field_key_is_escaped",
        ],
    )
    def test_names(self, series, tags, field, written):
        assert encode(Point(series, 1, tags, {field: 1.0})) == [f"{written}=1.0 1"]

    @pytest.mark.parametrize(
        ("value", "written"),
        [
            ('{Hello"{,}" World}', r'"{Hello\"{,}\" World}"'),
            ("foo,bar", '"foo,bar"'),
            ("foo=bar", '"foo=bar"'),
            ("foo bar", '"foo bar"'),
            ("foo\\bar", r'"foo\\bar"'),
            ("foo\\", r'"foo\\"'),
            ("日本", '"日本"'),
            ("", '""'),
        ],
        ids=[
            "quotes_in_string_field_are_escaped",
            "comma_in_string_field_is_written_as_it_is",
            "equals_in_string_field_is_written_as_it_is",
            "space_in_string_field_is_written_as_it_is",
            "backslash_in_string_field_is_escaped",
            "string_field_ending_in_backslash_is_escaped",
            "unicode_string_field_is_written_as_it_is",
            "empty_string_field_is_written",
        ],
    )
    def test_string_fields(self, value, written):
        assert encode(Point("cpu", 1, {"host": "a"}, {"str": value})) == [
            f"cpu,host=a str={written} 1"
        ]

    def test_integer_gets_i_and_int64_bounds_are_written(self):
        assert line(fields={"a": INT64_MIN, "b": 0, "c": INT64_MAX}) == (
            f"m a={INT64_MIN}i,b=0i,c={INT64_MAX}i 1"
        )

    def test_bool_is_true_or_false(self):
        assert line(fields={"t": True, "f": False}) == "m t=true,f=false 1"

    def test_time_range_is_influxdbs(self):
        points = [Point("m", t, {}, {"x": 1}) for t in (MIN_TIME_NS, MAX_TIME_NS)]
        assert encode(*points) == [f"m x=1i {MIN_TIME_NS}", f"m x=1i {MAX_TIME_NS}"]


class TestFieldValues:
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

    def test_none_nan_and_infinite_fields_are_left_out(self):
        encoder = LineEncoder()
        encoder.encode_lines([Point("m", 1, {}, dict.fromkeys("abcde", 0.5))])  # keys cached
        fields = {"a": None, "b": math.nan, "c": math.inf, "d": -math.inf, "e": 2}
        assert encoder.encode_lines([Point("m", 2, {}, fields)]) == ["m e=2i 2"]
        assert (encoder.fields_dropped, line(fields=fields)) == (0, "m e=2i 1")

    def test_subclasses_are_written_as_their_base_type(self):
        class Code(enum.IntEnum):
            NOT_FOUND = 404

        class Seconds(float):
            pass

        class Name(enum.StrEnum):
            A = "a"

        fields = {"i": Code.NOT_FOUND, "f": Seconds(0.25), "s": Name.A}
        assert line(fields=fields) == 'm i=404i,f=0.25,s="a" 1'

    def test_decimal_fraction_and_other_reals_are_written_as_floats(self):
        fields = {
            "d": Decimal("0.1"),
            "q": Fraction(1, 4),
            "big": Decimal("1e400"),
            "n": Decimal("NaN"),
        }
        assert line(fields=fields) == "m d=0.1,q=0.25 1"

    def test_other_integral_numbers_are_written_as_ints(self):
        class Count:
            def __int__(self) -> int:
                return 3

        numbers.Integral.register(Count)  # as numpy registers its integer types
        assert line(fields={"c": Count()}) == "m c=3i 1"


class TestLeftOut:
    @pytest.mark.parametrize(
        "fields",
        [
            {"x": [1]},
            {"x": b"bytes"},
            {"x": 2**63},
            {"x": -(2**63) - 1},
            {"x": Decimal("sNaN")},
            {"x": Fraction(10**400)},
            {"x": Dropped("given so")},
            {7: 1},
            {"\\": 1},
        ],
        ids=repr,
    )
    def test_field_that_cannot_be_written_is_left_out_and_counted(self, fields):
        """The good point before it fills the caches the others would hit."""
        encoder = LineEncoder()
        good = Point("m", 2, {"t": "v"}, {"y": 1})
        point = Point("m", 3, {"t": "v"}, {**fields, "y": 2})
        assert encoder.encode_lines([good, point]) == ["m,t=v y=1i 2", "m,t=v y=2i 3"]
        assert (encoder.fields_dropped, encoder.points_invalid) == (1, 0)

    @pytest.mark.parametrize(
        "tags",
        [{"t": ["list"]}, {"t": object()}, {7: "v"}, {"a\\": "2"}, {"t": Dropped("given so")}],
        ids=repr,
    )
    def test_tag_that_cannot_be_written_is_left_out_and_counted(self, tags):
        encoder = LineEncoder()
        point = Point("m", 3, {"a": "1", **tags}, {"y": 2})
        assert encoder.encode_lines([point]) == ["m,a=1 y=2i 3"]
        assert (encoder.tags_dropped, encoder.points_invalid) == (1, 0)

    def test_reason_of_the_last_left_out_is_kept(self):
        encoder = LineEncoder()
        encoder.encode_lines([Point("m", 1, {}, {"x": b"b", "y": 1})])
        assert encoder.last_dropped == "'m': field 'x' = b'b': unsupported type bytes"
        encoder.encode_lines([Point("m", 1, {}, {"x": Dropped("requests: why"), "y": 1})])
        assert encoder.last_dropped == "requests: why"

    def test_point_without_fields_is_not_written_and_counted(self):
        encoder = LineEncoder()
        points = [
            Point("m", 1, {}, {}),
            Point("m", 2, {}, {"a": None, "b": math.nan}),
            Point("m", 3, {}, {"a": object()}),
            Point("m", 4, {}, {"a": 1}),
        ]
        assert encoder.encode_lines(points) == ["m a=1i 4"]
        assert (encoder.points_without_fields, encoder.points_invalid) == (3, 0)

    @pytest.mark.parametrize(
        "point",
        [
            Point("m", 1.5, {"t": "v"}, {"x": 1}),
            Point("m", "1", {"t": "v"}, {"x": 1}),
            Point("m", True, {"t": "v"}, {"x": 1}),
            Point("m", None, {"t": "v"}, {"x": 1}),
            Point("m", MIN_TIME_NS - 1, {"t": "v"}, {"x": 1}),
            Point("m", MAX_TIME_NS + 1, {"t": "v"}, {"x": 1}),
            Point("", 1, {"t": "v"}, {"x": 1}),
            Point("\\", 1, {"t": "v"}, {"x": 1}),
            Point(None, 1, {"t": "v"}, {"x": 1}),
            Point("m", 1, None, {"x": 1}),
            Point("m", 1, {"t": "v"}, None),
            ("m", 1, {"t": "v"}),
        ],
        ids=repr,
    )
    def test_invalid_point_is_counted_without_breaking_the_batch(self, point):
        encoder = LineEncoder()
        good = Point("m", 2, {"t": "v"}, {"x": 1})
        assert encoder.encode_lines([good, point, good]) == ["m,t=v x=1i 2"] * 2
        assert (encoder.points_invalid, encoder.points_without_fields) == (1, 0)


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
        assert (first, second, encoder.fields_dropped) == (["m a=1i 1"], ["m a=1i 2"], 1)

    def test_tag_sets_with_left_out_tags_are_counted_in_every_point(self):
        assert counted(Point("m", 1, {"time": "x"}, {"f": 1}))[1] == 2


class TestCountFields:
    """The usages' counts: their text is made once per distinct set of values."""

    @pytest.mark.parametrize("keys", [("a_usages", "b_usages", "c_usages"), ("a", "b\\ x", "c=d")])
    def test_written_as_a_plain_dict_would_be_for_every_set_of_values(self, keys):
        tags = MappingProxyType({"service": "s"})
        values = [(0, 0, 0), (2, 0, 1), (0, 0, 0), (2, 0, 1), (7, 9, 2**63 - 1), (0, 0, 0)]
        counts = [
            ("u", t, tags, CountFields(zip(keys, v, strict=True))) for t, v in enumerate(values)
        ]
        plain = [("u", t, tags, dict(zip(keys, v, strict=True))) for t, v in enumerate(values)]
        encoder = LineEncoder()
        assert encoder.encode_lines(counts) == encode(*plain)
        assert encoder.encode_lines(counts[::-1]) == encode(*plain[::-1])

    def test_the_text_of_each_set_of_values_is_made_once(self):
        counts = [("u", t, {}, CountFields(a=t % 3, b=1)) for t in range(1, 10)]
        encoder = LineEncoder()
        assert encoder.encode_lines(counts) == [f"u a={t % 3}i,b=1i {t}" for t in range(1, 10)]
        assert encoder._counts == {("u", 1, 1): "a=1i,b=1i", ("u", 2, 1): "a=2i,b=1i",
                                   ("u", 0, 1): "a=0i,b=1i"}  # fmt: skip

    def test_a_count_beyond_int64_is_left_out_every_time_and_not_kept(self):
        fields = CountFields(a=1, b=2**63)
        encoder = LineEncoder()
        lines = encoder.encode_lines([("u", 1, {}, fields), ("u", 2, {}, fields)])
        assert (lines, encoder.fields_dropped, encoder._counts) == (["u a=1i 1", "u a=1i 2"], 2, {})

    def test_a_point_out_of_the_time_range_is_invalid_even_when_its_text_is_known(self):
        encoder = LineEncoder()
        fields = CountFields(a=1)
        lines = encoder.encode_lines([("u", 1, {}, fields), ("u", MAX_TIME_NS + 1, {}, fields)])
        assert (lines, encoder.points_invalid) == (["u a=1i 1"], 1)

    def test_counts_of_another_series_get_their_own_text(self):
        lines = encode(("u", 1, {}, CountFields(a=1)), ("v", 2, {}, CountFields(b=1)))
        assert lines == ["u a=1i 1", "v b=1i 2"]


def test_join_lines_makes_one_utf8_body_with_lone_surrogates_replaced():
    lines = encode(Point("m", 1, {"t": "é"}, {"s": "x\ud800y"}), Point("m", 2, {}, {"f": 1}))
    assert join_lines(lines) == 'm,t=é s="x?y" 1\nm f=1i 2'.encode()


def test_unknown_dialect_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="influx"):
        LineEncoder("influx")


def test_as_points_names_plain_tuples_and_keeps_points():
    named = Point("m", 1, {"t": "a"}, {"x": 1})
    plain = ("m", 2, {"t": "b"}, {"x": 2})
    first, second = as_points([named, plain])
    assert first is named
    assert type(second) is Point and second.time_ns == 2 and second == plain


# -- influxdb-client-python's Point as an oracle --------------------------------------------

# Where the rules coincide: no line breaks, tabs or backslashes, no leading "#" or empty
# names, no quote in field keys, no float fields (it writes 1.0 as 1).
SAFE_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters='\n\r\t\\"\0'), max_size=8
)
SAFE_NAME = SAFE_TEXT.filter(lambda t: t.strip() == t and t not in ("", "time"))
SAFE_VALUE = st.one_of(SAFE_TEXT, st.integers(INT64_MIN, INT64_MAX), st.booleans())


def client_line(point: Point) -> str:
    """influxdb-client's line for ``point``."""
    client = ClientPoint(point.series)
    for key, value in point.tags.items():
        client.tag(key, value)
    for key, value in point.fields.items():
        client.field(key, value)
    return client.time(point.time_ns).to_line_protocol()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=SAFE_NAME.filter(lambda s: not s.startswith("#")),
    tags=st.lists(st.tuples(SAFE_NAME, SAFE_NAME), max_size=3),
    fields=st.lists(st.tuples(SAFE_NAME, SAFE_VALUE), min_size=1, max_size=3),
)
def test_lines_are_influxdb_clients_where_the_rules_coincide(series, tags, fields):
    """Tag keys get a distinct first letter and fields come sorted, as the client orders them."""
    point = Point(
        series,
        1,
        {f"{chr(97 + i)}{k}": v for i, (k, v) in enumerate(tags)},
        dict(sorted({f"{chr(97 + i)}{k}": v for i, (k, v) in enumerate(fields)}.items())),
    )
    for dialect in ("influxdb", VM):
        assert encode(point, dialect=dialect) == [client_line(point)]


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@pytest.mark.parametrize(
    ("point", "client", "ours"),
    [
        (Point("m", 1, {}, {"s": "a\nb"}), 'm s="a\nb" 1', r'm s="a\nb" 1'),
        (Point("m", 1, {"t": "a\tb\rc"}, {"f": 1}), r"m,t=a\tb\rc f=1i 1", "m,t=a\tb\rc f=1i 1"),
        (
            Point("m", 1, {"t": "C:\\dir\\"}, {"f": 1}),
            "m,t=C:\\dir\\  f=1i 1",
            r"m,t=C:\dir f=1i 1",
        ),
        (Point("#m", 1, {}, {"f": 1}), "#m f=1i 1", r"\#m f=1i 1"),
        (Point("m", 1, {}, {'k"': 1}), 'm k"=1i 1', r"m k\"=1i 1"),
        (Point("m", 1, {}, {"x": 1.0}), "m x=1 1", "m x=1.0 1"),
        (Point("m", 1, {}, {"d": Decimal("1.10")}), "m d=1.10 1", "m d=1.1 1"),
        (Point("m", 1, {}, {"b": 1, "a": 2}), "m a=2i,b=1i 1", "m b=1i,a=2i 1"),
    ],
    ids=[
        "line_feed_in_string_raw_vs_backslash_n",
        "tab_and_cr_in_names_as_backslash_t_r_vs_raw",
        "trailing_backslash_of_tag_value_escapes_a_space_vs_removed",
        "leading_hash_comment_vs_escaped",
        "quote_in_field_key_raw_vs_escaped",
        "integral_float_as_1_vs_1_0",
        "decimal_as_str_vs_shortest_float",
        "fields_sorted_vs_as_given",
    ],
)
def test_where_we_differ_from_influxdb_client(point, client, ours):
    """Each deviation from influxdb-client's Point, listed in the README table."""
    assert (client_line(point), encode(point)) == (client, [ours])


# -- the caches ------------------------------------------------------------------------------

SPECIAL = st.sampled_from(list('\\\\\\, ="\n\r\t#\0'))
NAME = st.lists(st.one_of(SPECIAL, st.characters(exclude_categories=("Cs",))), max_size=8).map(
    "".join
)
FIELD_VALUE = st.one_of(
    st.sampled_from([None, math.nan, math.inf, -math.inf, Decimal("2.5"), b"x"]),
    NAME,
    st.integers(INT64_MIN - 1, INT64_MAX + 1),
    st.floats(),
    st.booleans(),
)


@st.composite
def random_points(draw: st.DrawFn) -> list[Point]:
    """30-60 points with hostile names and values."""
    return [
        Point(
            draw(NAME),
            draw(st.integers(-(2**62), 2**62)),
            draw(st.dictionaries(NAME, NAME, max_size=4)),
            draw(st.dictionaries(NAME, FIELD_VALUE, min_size=1, max_size=4)),
        )
        for _ in range(draw(st.integers(30, 60)))
    ]


ENCODER_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COUNTERS = ("points_invalid", "points_without_fields", "fields_dropped", "tags_dropped")


@ENCODER_SETTINGS
@given(points=random_points(), dialect=st.sampled_from(["influxdb", VM]))
def test_points_encode_the_same_with_warm_caches(points, dialect):
    """The inline path (caches filled) and the full path (first sight) agree; no line holds
    a line feed."""
    encoder = LineEncoder(dialect)
    first = encoder.encode_lines(points)
    skipped = [getattr(encoder, name) for name in COUNTERS]
    assert encoder.encode_lines(points) == first
    assert [getattr(encoder, name) for name in COUNTERS] == [2 * n for n in skipped]
    assert not any("\n" in text for text in first)


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
